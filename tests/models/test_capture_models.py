"""nx.list_layers, nx.activations and nx.capture on real architectures, against what each layer really produced.

The reference is a plain forward hook that stores ``out.clone()``: the value the layer produced, before a
later ``ReLU(inplace=True)`` or ``out += identity`` (torchvision's ResNet blocks) overwrites it. Token
outputs ``(N, T, D)`` are read feature-last; conv maps ``(N, C, H, W)`` as ``N·H·W`` samples of ``C``.
Every call runs on a model dressed like a user's (own hooks, a frozen parameter) and must leave it as found.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx
from tests.models.reference import channel_features, produced, token_features
from tests.models.state import dress, untouched
from tests.models.zoo import CASES, V, build, conv_bn_relu

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Same kernels, same batch: only the layout differs, so float32 rounding is all that may separate them.
TOL = dict(rtol=1e-5, atol=1e-6)


def test_issue_example_keeps_the_batch_norm_output_not_the_relu() -> None:
    net = conv_bn_relu()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    true = channel_features(produced(net, x, ["1"])["1"][0])
    assert float(true.min()) < -0.5  # the batch norm output is signed; the in-place ReLU zeroes it
    dress(net, "0")
    with untouched(net):
        got = nx.activations(net, x, "1")["1"]
    torch.testing.assert_close(got, true, **TOL)


CHANNEL_CASES = [n for n, c in CASES.items() if c.channel_layer and n != "shared"]


@pytest.mark.parametrize("name", CHANNEL_CASES)
def test_activations_and_capture_keep_what_the_layer_produced(name: str) -> None:
    net, case = build(name)
    x = case.x(3)
    layer = case.channel_layer
    true = produced(net, x, [layer])[layer][0]
    dress(net, case.hook_layer)
    with untouched(net):
        got = nx.activations(net, x, layer)[layer]
    torch.testing.assert_close(got, channel_features(true), **TOL)
    with untouched(net):
        with nx.capture(net, layer) as out:
            net(x)
    torch.testing.assert_close(out[layer], true, **TOL)


def test_shared_module_every_call_is_kept() -> None:
    net, case = build("shared")
    x = case.x(2)
    true = produced(net, x, ["shared"])["shared"]
    assert len(true) == 2
    dress(net, case.hook_layer)
    with untouched(net):
        with nx.capture(net, "shared") as out:
            net(x)
    assert len(out.calls["shared"]) == 2
    for got, want in zip(out.calls["shared"], true, strict=True):
        torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(out["shared"], true[-1], **TOL)  # the latest call


def test_issue_token_example_reads_features_last() -> None:
    net = V().eval()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    true = produced(net, x, ["block"])["block"][0]
    assert true.shape == (2, 16, 8)
    with untouched(net):
        got = nx.activations(net, x, "block")["block"]
    assert got.shape == (32, 8)
    torch.testing.assert_close(got, token_features(true), **TOL)


@pytest.mark.parametrize(("name", "layer"), [("vit", "encoder.layers.0"), ("vit", "norm"), ("V", "block"),
                                             ("lstm", "emb"), ("gru", "emb"), ("lstm", "rnn"), ("gru", "rnn")])
def test_token_layers_every_mode(name: str, layer: str) -> None:
    net, case = build(name)
    x = case.x(3)
    true = produced(net, x, [layer])[layer][0]  # (N, T, D); an RNN's is output[0]
    n, _t, d = true.shape
    dress(net, case.hook_layer)
    expected = {
        "channels": token_features(true),
        "mean": true.mean(1),
        "cls": true[:, 0],
        "flatten": true.reshape(n, -1),
    }
    for conv, want in expected.items():
        with untouched(net):
            got = nx.activations(net, x, layer, conv=conv)[layer]
        assert got.shape == want.shape, conv
        torch.testing.assert_close(got, want, **TOL, msg=f"conv={conv!r}")
    assert expected["channels"].shape[1] == d
    try:  # not among the agreed token modes: max over tokens, or a clear refusal
        got = nx.activations(net, x, layer, conv="max")[layer]
    except ValueError as err:
        assert "max" in str(err)
    else:
        torch.testing.assert_close(got, true.amax(1), **TOL)


def test_layout_override_per_layer_and_for_all() -> None:
    net, case = build("V")
    x = case.x(2)
    outs = produced(net, x, ["patch", "block"])
    block, patch = outs["block"][0], outs["patch"][0]
    with untouched(net):
        forced = nx.activations(net, x, ["block"], layout={"block": "channels_first"})["block"]
        both = nx.activations(net, x, ["patch", "block"], layout="features_last")
    torch.testing.assert_close(forced, channel_features(block), **TOL)  # T "channels" of D positions
    torch.testing.assert_close(both["block"], token_features(block), **TOL)
    torch.testing.assert_close(both["patch"], patch.reshape(-1, patch.shape[-1]), **TOL)
    with pytest.raises(ValueError, match="layout"):
        with untouched(net):
            nx.activations(net, x, "block", layout="sideways")


def test_cls_mode_on_a_conv_map_is_a_clear_error_or_first_position() -> None:
    net, case = build("conv_bn_relu")
    x = case.x(2)
    try:
        got = nx.activations(net, x, "1", conv="cls")["1"]
    except ValueError as err:
        assert "cls" in str(err)
    else:
        true = produced(net, x, ["1"])["1"][0]
        torch.testing.assert_close(got, true.flatten(2)[:, :, 0], **TOL)


def test_layers_reports_resolved_layouts() -> None:
    net, case = build("V")
    x = case.x(2)
    with untouched(net):
        names = nx.list_layers(net, inputs=x)
    assert isinstance(names, list) and hasattr(names, "layouts")
    assert set(names.layouts) == set(names)
    assert names.layouts["patch"] == "channels_first"
    modules = dict(net.named_modules())
    for n in names:
        if isinstance(modules[n], nn.Linear):
            assert names.layouts[n] == "features_last", n
    blocks = nx.list_layers(net, kinds=[nn.TransformerEncoderLayer], inputs=x)
    assert blocks == ["block"] and blocks.layouts == {"block": "features_last"}

    net, case = build("resnet18")
    names = nx.list_layers(net, kinds="all", inputs=case.x(2))
    assert names.layouts["layer1.0.bn2"] == "channels_first"
    assert names.layouts["layer2.0.downsample.1"] == "channels_first"
    assert names.layouts["fc"] == "features_last"


def test_channels_last_and_float64_give_the_float32_answer() -> None:
    net, case = build("resnet18")
    x = case.x(3)
    layer = case.channel_layer
    want = nx.activations(net, x, layer)[layer]
    got = nx.activations(net, x.to(memory_format=torch.channels_last), layer)[layer]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # other conv kernels, float32 rounding
    net64 = net.double()
    with untouched(net64):
        got64 = nx.activations(net64, x, layer)[layer]  # float32 input, float64 model: cast to the model
    torch.testing.assert_close(got64, want, rtol=1e-4, atol=1e-4)


def test_calls_that_raise_mid_forward_leave_the_model_as_found() -> None:
    net, case = build("resnet18")
    dress(net, case.hook_layer)
    x = case.x(2)

    def batches():
        yield x
        raise RuntimeError("data loader failed")

    with pytest.raises(RuntimeError, match="data loader failed"):
        with untouched(net):
            nx.activations(net, batches(), [case.channel_layer, "fc"], batch_size=1)
    with pytest.raises(RuntimeError, match="data loader failed"):
        with untouched(net):
            with nx.capture(net, case.channel_layer):
                net(x)
                raise RuntimeError("data loader failed")
    with pytest.raises(ValueError, match="conv"):
        with untouched(net):
            nx.activations(net, x, case.channel_layer, conv="sideways")
