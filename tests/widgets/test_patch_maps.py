"""ViT patch relevance in Heatmap and ExplanationExplorer: maps on the patch grid shown at image size, with no
extra code, and attention rollout as an ExplanationExplorer method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.architectures import vit
from nbexplain.widgets import ExplanationExplorer, Heatmap

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def per_patch(maps: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """(N, C, H, W) relevance summed over channels and each patch: (N, H/patch, W/patch)."""
    return nn.functional.avg_pool2d(maps.sum(1, keepdim=True), patch).squeeze(1) * patch * patch


def upsampled(maps: torch.Tensor, factor: int) -> np.ndarray:
    return maps.repeat_interleave(factor, 1).repeat_interleave(factor, 2).numpy()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))


# ---- Heatmap -------------------------------------------------------------------------------------------


def test_heatmap_shows_patch_maps_at_image_size(x) -> None:
    patches = torch.randn(3, 4, 4)
    h = Heatmap(patches, images=x)
    assert h.maps.shape == (3, 16, 16) and h.source_shape == [16, 16]
    np.testing.assert_array_equal(h.maps, upsampled(patches, 4))
    h.selected = 1
    np.testing.assert_array_equal(h.selected_map, upsampled(patches, 4)[1])
    # rectangular grids too, and a map already at image size is unchanged
    rect = torch.randn(3, 2, 8)
    np.testing.assert_array_equal(Heatmap(rect, images=x).maps, rect.repeat_interleave(8, 1).repeat_interleave(2, 2).numpy())
    full = torch.randn(3, 16, 16)
    np.testing.assert_array_equal(Heatmap(full, images=x).maps, full.numpy())


def test_heatmap_keeps_maps_that_do_not_divide_the_image_and_maps_without_images(x) -> None:
    odd = torch.randn(3, 5, 5)
    assert Heatmap(odd, images=x).maps.shape == (3, 5, 5)  # drawn stretched, as before
    assert Heatmap(torch.randn(3, 4, 4)).maps.shape == (3, 4, 4)  # no image size to upsample to


def test_heatmap_takes_an_attribution_result(x) -> None:
    res = nx.attention_rollout(vit(), x)
    h = Heatmap(res, images=x)
    np.testing.assert_allclose(h.maps, res.attribution.numpy(), rtol=1e-6)
    assert h.cmap == "sequential"
    g = nx.gradient_x_input(vit(), x)
    np.testing.assert_allclose(Heatmap(g).maps, g.attribution.sum(1).numpy(), rtol=1e-6)


def test_heatmap_errors_are_unchanged_for_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"`maps` must be \(N, H, W\) or \(N, C, H, W\).*\(1, 2, 3, 4, 5\)"):
        Heatmap(torch.zeros(1, 2, 3, 4, 5))


# ---- ExplanationExplorer -------------------------------------------------------------------------------


def test_explorer_shows_attention_rollout_beside_relevance(x) -> None:
    model = vit()
    patch_relevance = lambda m, z, t: per_patch(nx.gradient_x_input(m, z, t).attribution)  # noqa: E731
    patch_relevance.__name__ = "patch_gxi"
    ex = ExplanationExplorer(model, x, methods=["attention_rollout", "gradient_x_input", patch_relevance], n_shown=2)
    assert ex.methods[0] == {"key": "attention_rollout", "title": "attention rollout", "kind": "sequential"}
    assert ex.maps.shape[-2:] == (16, 16)
    t = ex.targets[1]
    maps = ex.maps_for(1)
    roll = nx.attention_rollout(model, x[1:2])
    np.testing.assert_allclose(maps["attention_rollout"], roll.attribution[0].numpy(), rtol=1e-5, atol=1e-7)
    gxi = nx.gradient_x_input(model, x[1:2], t).attribution
    np.testing.assert_allclose(maps["gradient_x_input"], gxi[0, 0].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(maps["patch_gxi"], upsampled(per_patch(gxi), 4)[0], rtol=1e-5, atol=1e-6)
    # rollout has no target: the same map for another class, and no conservation
    other = (t + 1) % 10
    np.testing.assert_allclose(ex.maps_for(1, other)["attention_rollout"], maps["attention_rollout"])
    scores = ex.scores_for(1)
    assert scores["attention_rollout"]["conservation"] is None
    cont = nx.continuity(lambda z: nx.attention_rollout(model, z).attribution.unsqueeze(1), x[1:2], shifts=[-1, 0, 1])
    assert scores["attention_rollout"]["continuity"] == pytest.approx(float(cont.score[0]), rel=1e-4)
    cont_p = nx.continuity(lambda z: torch.from_numpy(upsampled(per_patch(nx.gradient_x_input(model, z, t).attribution), 4))
                           .unsqueeze(1), x[1:2], shifts=[-1, 0, 1])
    assert scores["patch_gxi"]["continuity"] == pytest.approx(float(cont_p.score[0]), rel=1e-4)


def test_explorer_passes_method_options_to_rollout(x) -> None:
    model = vit()
    ex = ExplanationExplorer(model, x, methods=["attention_rollout"], continuity_shifts=None, n_shown=1,
                             method_options={"attention_rollout": {"head_fusion": "max", "residual": 0.0}})
    want = nx.attention_rollout(model, x[:1], head_fusion="max", residual=0.0).attribution[0]
    np.testing.assert_allclose(ex.maps_for(0)["attention_rollout"], want.numpy(), rtol=1e-5, atol=1e-7)


def test_explorer_shows_lrp_beside_patch_maps_on_a_patch_cnn() -> None:
    """An existing LRP composite beside a patch map (until `attn_lrp` can explain the ViT itself)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 4, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3)).eval()
    x = torch.rand(2, 1, 16, 16)
    per_patch_lrp = lambda m, z, t: per_patch(nx.lrp(m, z, t, composite="epsilon").attribution)  # noqa: E731
    per_patch_lrp.__name__ = "lrp per patch"
    ex = ExplanationExplorer(net, x, methods=["lrp:epsilon", per_patch_lrp], n_shown=2, continuity_shifts=None)
    maps = ex.maps_for(0)
    lrp = nx.lrp(net, x[:1], ex.targets[0], composite="epsilon")
    np.testing.assert_allclose(maps["lrp per patch"], upsampled(per_patch(lrp.attribution), 4)[0], rtol=1e-5, atol=1e-6)
    # a patch's value is the relevance of its pixels summed: the totals agree
    assert float(maps["lrp per patch"].sum()) / 16 == pytest.approx(float(maps["lrp:epsilon"].sum()), rel=1e-4)


@pytest.mark.skipif("attn_lrp" not in nx.COMPOSITES, reason="the attn_lrp composite is not registered yet")
def test_explorer_shows_attn_lrp_and_rollout_side_by_side(x) -> None:
    ex = ExplanationExplorer(vit(), x, methods=["lrp:attn_lrp", "attention_rollout"], n_shown=1)
    maps = ex.maps_for(0)
    assert maps["lrp:attn_lrp"].shape == maps["attention_rollout"].shape == (16, 16)


def test_explorer_refuses_maps_it_cannot_place(x) -> None:
    odd = lambda m, z, t: torch.zeros(z.shape[0], 5, 5)  # noqa: E731
    odd.__name__ = "odd"
    with pytest.raises(ValueError, match=r"Method 'odd' returned maps of shape \(3, 5, 5\).*one per patch \(3, rows, "
                                         r"columns\) with rows dividing 16"):
        ExplanationExplorer(vit(), x, methods=[odd], n_shown=3)
    flat = lambda m, z, t: torch.zeros(7)  # noqa: E731
    flat.__name__ = "flat"
    with pytest.raises(ValueError, match="Method 'flat' must return an attribution result"):
        ExplanationExplorer(vit(), x, methods=[flat], n_shown=3)
    with pytest.raises(ValueError, match="ran no attention"):
        ExplanationExplorer(nn.Sequential(nn.Flatten(), nn.Linear(256, 3)), x, methods=["attention_rollout"])
