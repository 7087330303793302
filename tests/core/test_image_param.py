"""Image parameterisations (pixel, decorrelated Fourier) and robustness transforms / penalties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nbexplain.core.actmax.image_param import (
    IMAGENET_COLOR_SQRT,
    FourierImage,
    PixelImage,
    color_correlation,
    image_param,
)
from nbexplain.core.actmax.transforms import (
    Compose,
    FitTo,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    l2_penalty,
    standard_transforms,
    total_variation,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------
# Fourier parameterisation
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16), (3, 15, 20), (1, 9, 7)])
@pytest.mark.parametrize("range_mode", ["sigmoid", "clamp"])
def test_fourier_round_trips_images(shape, range_mode):
    torch.manual_seed(0)
    x = 0.1 + 0.8 * torch.rand(2, *shape)
    p = FourierImage(shape, batch=2, value_range=(0, 1), range_mode=range_mode, generator=gen())
    assert torch.allclose(p.encode(x)(), x, atol=1e-4)


def test_fourier_round_trips_unbounded_and_other_range():
    torch.manual_seed(1)
    x = torch.randn(3, 3, 12, 12)
    p = FourierImage((3, 12, 12), batch=3, value_range=None, generator=gen())
    assert torch.allclose(p.encode(x)(), x, atol=1e-4)
    x2 = -1.5 + 3.0 * (0.05 + 0.9 * torch.rand(3, 3, 12, 12))
    p2 = FourierImage((3, 12, 12), batch=3, value_range=(-1.5, 1.5), generator=gen())
    assert torch.allclose(p2.encode(x2)(), x2, atol=1e-4)


def test_fourier_parameters_round_trip_through_images():
    """decode → encode → decode is the identity on images even for arbitrary coefficients."""
    p = FourierImage((3, 10, 13), batch=2, value_range=None, init_std=1.0, generator=gen(3))
    first = p().detach()
    q = FourierImage((3, 10, 13), batch=2, value_range=None, generator=gen(4)).encode(first)
    assert torch.allclose(q(), first, atol=1e-5)


def test_fourier_matches_numpy_irfft_reference_and_1_over_f_scale():
    """Images are irfft2(scale · c) with scale ∝ 1/max(f, 1/max(H, W)), checked against numpy in float64."""
    h, w = 12, 10
    p = FourierImage((1, h, w), batch=1, value_range=None, decorrelate=False, init_std=1.0, generator=gen(5))
    coeff = p.coefficients.detach().double().numpy()
    spectrum = coeff[..., 0] + 1j * coeff[..., 1]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    scale = 1.0 / np.maximum(np.sqrt(fx**2 + fy**2), 1.0 / max(h, w))
    scale = scale / np.sqrt(np.mean(scale**2))
    ref = np.fft.irfft2(spectrum * scale, s=(h, w), norm="ortho")
    assert np.allclose(p().detach().double().numpy(), ref, atol=1e-5)
    # Low frequencies carry more energy than high ones (natural-image 1/f spectrum).
    assert scale[0, 0] > 5 * scale[h // 2, w // 2]


def test_colour_decorrelation_uses_normalised_matrix():
    p = FourierImage((3, 8, 8), batch=1, value_range=None, init_std=1.0, generator=gen(6))
    m = IMAGENET_COLOR_SQRT / IMAGENET_COLOR_SQRT.norm(dim=0).max()
    t = p.decorrelated().detach().double()
    expected = torch.einsum("ij,njhw->nihw", m, t)
    assert torch.allclose(p().detach().double(), expected, atol=1e-5)
    # Grey-scale images are never colour-mixed.
    assert FourierImage((1, 8, 8)).color is None


def test_color_correlation_reproduces_channel_covariance():
    torch.manual_seed(2)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])
    x = torch.einsum("ij,njhw->nihw", mix, torch.randn(50, 3, 8, 8))
    a = color_correlation(x)
    flat = x.double().movedim(1, -1).reshape(-1, 3)
    cov = torch.cov(flat.T)
    assert torch.allclose(a @ a.T, cov, atol=1e-8)


@pytest.mark.parametrize("kind", ["pixel", "fourier"])
@pytest.mark.parametrize("range_mode", ["sigmoid", "clamp"])
def test_values_stay_in_range(kind, range_mode):
    p = image_param(kind, (3, 8, 8), batch=2, value_range=(-0.5, 2.0), range_mode=range_mode,
                    init_std=50.0, generator=gen())
    x = p()
    assert x.min() >= -0.5 and x.max() <= 2.0


def test_pixel_round_trip_and_projection():
    torch.manual_seed(3)
    x = 0.05 + 0.9 * torch.rand(2, 3, 5, 5)
    for mode in ("sigmoid", "clamp"):
        p = PixelImage((3, 5, 5), batch=2, value_range=(0, 1), range_mode=mode, generator=gen())
        assert torch.allclose(p.encode(x)(), x, atol=1e-4)
    p = PixelImage((1, 4, 4), batch=1, value_range=(0, 1), range_mode="clamp", init_std=10.0, generator=gen())
    p.project_()
    assert p.pixels.abs().max() <= 0.5 + 1e-6  # parameters live in [lo - mid, hi - mid]


def test_param_seeded_and_bad_inputs():
    a = FourierImage((1, 8, 8), generator=gen(1))().detach()
    b = FourierImage((1, 8, 8), generator=gen(1))().detach()
    c = FourierImage((1, 8, 8), generator=gen(2))().detach()
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="param"):
        image_param("fourrier", (1, 8, 8))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        FourierImage((8, 8))
    with pytest.raises(ValueError, match="value_range"):
        FourierImage((1, 8, 8), value_range=(1, 0))
    with pytest.raises(ValueError, match="range_mode"):
        PixelImage((1, 8, 8), range_mode="tanh")
    with pytest.raises(ValueError, match="encode"):
        FourierImage((1, 8, 8), batch=2).encode(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="color_matrix"):
        FourierImage((3, 8, 8), color_matrix=torch.eye(2))


# ---------------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------------
TRANSFORMS = [
    Pad(2, "reflect"),
    Pad(1, "constant", 0.3),
    Jitter(2),
    RandomScale((0.9, 1.1)),
    RandomScale((0.8, 1.2), continuous=True),
    RandomRotate(10.0),
    RandomRotate((-5.0, 5.0)),
    FitTo(6, 5),
    standard_transforms(8),
]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transforms_are_differentiable(t):
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: t(v, gen(7)), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transforms_are_seeded(t):
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(t(x, gen(1)), t(x, gen(1)))


def test_random_transforms_vary_with_seed_and_per_image():
    x = torch.rand(4, 1, 16, 16)
    rot = RandomRotate(20.0)
    assert not torch.equal(rot(x, gen(1)), rot(x, gen(2)))
    # one angle per image: identical inputs come out differently
    same = x[:1].expand(4, -1, -1, -1)
    out = rot(same, gen(3))
    assert not torch.allclose(out[0], out[1])
    assert not torch.equal(Jitter(3)(x, gen(1)), Jitter(3)(x, gen(4)))


def test_rotation_by_90_degrees_matches_rot90():
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    out = RandomRotate((90.0,))(x, gen())
    # positive angles turn counter-clockwise as displayed (torchvision's convention): the top-right pixel
    # goes to the top left, which is rot90 with k=1 over (H, W)
    torch.testing.assert_close(out, torch.rot90(x, k=1, dims=(-2, -1)), atol=1e-9, rtol=0)
    corner = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    corner[0, 0, 0, 4] = 1.0
    turned = RandomRotate((90.0,))(corner, gen())
    assert float(turned[0, 0, 0, 0]) == pytest.approx(1.0) and float(turned[0, 0, 0, 4]) == pytest.approx(0.0)


def test_composed_affine_steps_fuse_into_one_exact_map():
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    inverse_pair = Compose([RandomRotate((37.0,)), RandomRotate((-37.0,))])
    assert torch.allclose(inverse_pair(x, gen()), x, atol=1e-9)
    zoom_pair = Compose([RandomScale((2.0,)), RandomScale((0.5,))])
    assert torch.allclose(zoom_pair(x, gen()), x, atol=1e-9)


def test_jitter_pad_fit_shapes_and_reference():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float64).reshape(2, 1, 5, 5)
    g = gen(11)
    dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=gen(11)))
    ref = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")[..., dy : dy + 5, dx : dx + 5]
    assert torch.equal(Jitter(2)(x, g), ref)
    assert Pad(3)(x).shape[-2:] == (11, 11)
    assert torch.equal(FitTo(5, 5)(Pad(3)(x)), x)
    assert FitTo(7, 9)(x).shape[-2:] == (7, 9)
    assert standard_transforms(28)(torch.rand(2, 1, 28, 28), gen()).shape == (2, 1, 28, 28)


def test_transform_bad_inputs():
    with pytest.raises(ValueError, match="width"):
        Pad(-1)
    with pytest.raises(ValueError, match="mode"):
        Pad(1, "wrap")
    with pytest.raises(ValueError, match="pixels"):
        Jitter(1.5)
    with pytest.raises(ValueError, match="scales"):
        RandomScale((0.0, 1.0))
    with pytest.raises(ValueError, match="degrees"):
        RandomRotate(float("nan"))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Jitter(1)(torch.rand(3, 8, 8), gen())
    with pytest.raises(ValueError, match="CPU"):
        if torch.cuda.is_available():
            Jitter(1)(torch.rand(1, 1, 8, 8), torch.Generator("cuda"))
        else:
            raise ValueError("Pass a CPU torch.Generator (skipped check without CUDA)")


# ---------------------------------------------------------------------------------------------------
# Penalties, against float64 formulas
# ---------------------------------------------------------------------------------------------------
def test_l2_and_total_variation_match_formulas():
    torch.manual_seed(4)
    x = torch.rand(3, 2, 6, 7, dtype=torch.float64)
    assert torch.allclose(l2_penalty(x, 0.5), ((x - 0.5) ** 2).mean(dim=(1, 2, 3)))
    ref2 = torch.zeros(3, dtype=torch.float64)
    ref1 = torch.zeros(3, dtype=torch.float64)
    for n in range(3):
        acc2 = acc1 = 0.0
        count = 0
        for c in range(2):
            for i in range(5):
                for j in range(6):
                    d2 = (x[n, c, i + 1, j] - x[n, c, i, j]) ** 2 + (x[n, c, i, j + 1] - x[n, c, i, j]) ** 2
                    acc2 += float(d2)
                    acc1 += math.sqrt(float(d2))
                    count += 1
        ref2[n], ref1[n] = acc2 / count, acc1 / count
    assert torch.allclose(total_variation(x), ref2)
    assert torch.allclose(total_variation(x, beta=1.0), ref1, atol=1e-6)
    assert torch.equal(total_variation(torch.ones(2, 1, 4, 4)), torch.zeros(2))
    with pytest.raises(ValueError):
        total_variation(torch.ones(4, 4))
