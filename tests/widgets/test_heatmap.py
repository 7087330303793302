"""Heatmap and the widget foundation without a browser: traits, wire format, errors, repr."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import traitlets
from ipywidgets.widgets.widget import _remove_buffers

from nbexplain.widgets import Heatmap
from nbexplain.widgets.base import NbxWidget, bundle_path
from nbexplain.widgets.tensor import (
    TensorTrait,
    _deserialize_tensor,
    downsample_maps,
    serialize_tensor,
    to_uint8_images,
)


def test_wire_format_round_trips_and_is_binary() -> None:
    arr = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    wire = serialize_tensor(arr)
    assert wire["dtype"] == "float32" and wire["shape"] == [3, 5, 7]
    assert isinstance(wire["view"], memoryview) and wire["view"].nbytes == arr.nbytes
    assert np.array_equal(_deserialize_tensor(wire), arr)
    u = np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1)
    assert np.array_equal(_deserialize_tensor(serialize_tensor(u)), u)


def test_heatmap_state_ships_tensors_as_buffers_not_json_lists() -> None:
    maps = torch.randn(8, 28, 28)
    h = Heatmap(maps, images=torch.rand(8, 1, 28, 28))
    state, buffer_paths, buffers = _remove_buffers(h.get_state())
    assert ["maps", "view"] in buffer_paths and ["images", "view"] in buffer_paths
    assert sum(b.nbytes for b in buffers) == 8 * 28 * 28 * 4 + 8 * 28 * 28
    # what remains is small JSON: the traits without the view's own code (_esm, the bundle, grows with the view)
    text = json.dumps({k: v for k, v in state.items() if k not in ("_esm", "_css")})
    assert len(text) < 5_000, len(text)  # 8 × 28 × 28 values as a JSON list would be > 25,000 characters
    assert np.array_equal(h.maps, maps.numpy())


def test_heatmap_scales_colour_maps_and_reduces_channels() -> None:
    signed = Heatmap(torch.tensor([[[-2.0, 1.0]], [[0.5, 0.0]]]))
    assert signed.cmap == "diverging" and (signed.vmin, signed.vmax) == (-2.0, 2.0)
    unsigned = Heatmap(torch.tensor([[[0.5, 1.5]]]))
    assert unsigned.cmap == "sequential" and (unsigned.vmin, unsigned.vmax) == (0.5, 1.5)
    forced = Heatmap(torch.tensor([[[0.5, 1.5]]]), cmap="diverging", vmax=3.0)
    assert (forced.vmin, forced.vmax) == (-1.5, 3.0)
    x = torch.randn(2, 3, 4, 4)
    assert np.allclose(Heatmap(x).maps, x.sum(1).numpy(), atol=1e-6)
    assert np.allclose(Heatmap(x, reduce="abs_sum").maps, x.abs().sum(1).numpy(), atol=1e-6)
    assert np.allclose(Heatmap(x, reduce="norm").maps, x.norm(dim=1).numpy(), atol=1e-5)
    assert Heatmap(torch.rand(5, 5)).maps.shape == (1, 5, 5)


def test_heatmap_rounds_only_limits_it_chose() -> None:
    """The view rounds the colour limits to nice values (``round_limits``) only when the user gave none."""
    data = torch.tensor([[[-1.007e-4, 0.5e-4]]])
    assert Heatmap(data).round_limits is True
    assert Heatmap(data, vmin=-2e-4, vmax=2e-4).round_limits is False
    assert Heatmap(data, vmax=2e-4).round_limits is False
    h = Heatmap(data, vmin=-1.0, vmax=1.0)
    h.set_maps(data)
    assert h.round_limits is True and (h.vmin, h.vmax) == pytest.approx((-1.007e-4, 1.007e-4))
    assert "round_limits" in h.keys  # synced to the view


def test_heatmap_downsamples_large_batches_under_the_budget() -> None:
    h = Heatmap(torch.rand(64, 256, 256), images=torch.rand(64, 3, 256, 256), max_bytes=2_000_000)
    assert h.maps.nbytes + h.images.nbytes <= 2_000_000
    assert h.source_shape == [256, 256]
    assert h.data.shape == (64, 256, 256), "the full-resolution maps stay in Python"
    pooled, f = downsample_maps(np.arange(16, dtype=np.float32).reshape(1, 4, 4), max_bytes=16)
    assert f == 2 and np.allclose(pooled[0], [[2.5, 4.5], [10.5, 12.5]])


def test_heatmap_selection_and_update() -> None:
    h = Heatmap(torch.rand(4, 6, 6), titles=list("abcd"))
    seen = []
    h.observe(lambda c: seen.append(c["new"]), "selected")
    h.selected = 2
    assert seen == [2] and torch.equal(torch.as_tensor(h.selected_map), torch.as_tensor(h.data[2]))
    h.set_maps(torch.rand(2, 6, 6))
    assert h.selected == -1 and h.titles == ["0", "1"]
    with pytest.raises(traitlets.TraitError):
        h.opacity = 1.5


def test_heatmap_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="`maps` must be"):
        Heatmap(torch.rand(2, 3, 4, 5, 6))
    with pytest.raises(ValueError, match="`titles` has 1 entries for 2 maps"):
        Heatmap(torch.rand(2, 4, 4), titles=["x"])
    with pytest.raises(ValueError, match="`images` has 3 images for 2 maps"):
        Heatmap(torch.rand(2, 4, 4), images=torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        Heatmap(torch.tensor([[[float("nan")]]]))
    with pytest.raises(ValueError, match="cmap"):
        Heatmap(torch.rand(1, 2, 2), cmap="jet")
    with pytest.raises(ValueError, match="`vmin`"):
        Heatmap(torch.rand(1, 2, 2), vmin=2, vmax=1)
    with pytest.raises(ValueError, match="images"):
        Heatmap(torch.rand(1, 2, 2), images=torch.rand(1, 2, 2, 2, 2))


def test_unknown_keyword_arguments_name_the_close_match() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'opcity'. Did you mean 'opacity'"):
        Heatmap(torch.rand(1, 2, 2), opcity=0.5)
    with pytest.raises(TypeError, match="'zzz'"):
        Heatmap(torch.rand(1, 2, 2), zzz=1)


def test_repr_is_short_and_bundle_is_built() -> None:
    h = Heatmap(torch.randn(3, 10, 12))
    assert repr(h) == "Heatmap(n=3, shape=10×12, cmap=diverging)"
    # the widget ships the heatmap bundle itself (not another view's, not an empty placeholder), and that
    # bundle's default export is an anywidget module with a render function
    assert str(h._esm) == bundle_path("heatmap").read_text()
    assert re.search(r"var (\w+)=\{[^{}]*\brender:[^{}]*\};export\{\1 as default\}", str(h._esm)[-200:])


def test_tensor_trait_validation() -> None:
    class W(traitlets.HasTraits):
        f = TensorTrait("float32", ndim=2)
        u = TensorTrait("uint8")

    w = W()
    w.f = torch.ones(2, 2, dtype=torch.float64)
    assert w.f.dtype == np.float32
    with pytest.raises(traitlets.TraitError, match="2 dimensions"):
        w.f = np.ones(3)
    with pytest.raises(traitlets.TraitError, match="uint8"):
        w.u = np.ones(3, dtype=np.float32)
    with pytest.raises(traitlets.TraitError, match="NaN"):
        w.f = np.full((1, 1), np.inf)
    with pytest.raises(ValueError, match="dtype"):
        TensorTrait("int64")


def test_to_uint8_images_layouts_and_scaling() -> None:
    chw = torch.rand(2, 3, 4, 5)
    out = to_uint8_images(chw, value_range=(0, 1))
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8
    assert np.array_equal(out, (chw.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    assert to_uint8_images(np.zeros((2, 4, 4))).shape == (2, 4, 4, 1)
    with pytest.raises(ValueError, match="C in"):
        to_uint8_images(np.zeros((2, 5, 4, 4)))


def test_missing_bundle_is_a_clear_error() -> None:
    class Ghost(NbxWidget):
        _bundle = "does_not_exist"

    with pytest.raises(RuntimeError, match="npm run build"):
        Ghost()


def test_default_opacity_keeps_the_colour_bar_true() -> None:
    """Issue 14 item 3: by default the map is opaque (its colours are the colour bar's; the view draws the image
    as an outline on top), and an explicit opacity still blends."""
    h = Heatmap(torch.randn(2, 4, 4), images=torch.rand(2, 1, 4, 4))
    assert h.opacity == 1.0
    assert Heatmap(torch.randn(2, 4, 4), opacity=0.4).opacity == 0.4
