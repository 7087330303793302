"""A model on the ``meta`` device holds no values: every entry point says so (the message names 'meta'),
before torch's internals ("Cannot copy out of meta tensor"), and leaves the model as found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import nbexplain as nx
from nbexplain import architectures as arch
from tests.models.state import untouched

pytestmark = pytest.mark.usefixtures("one_torch_thread")

X = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3])
LAYER = "layer1.0.bn2"


def _meta() -> torch.nn.Module:
    with torch.device("meta"):
        net = arch.ResNet(arch.BasicBlock, (2, 2, 2, 2), width=4)
    return net.eval()


def _stats() -> Any:
    return nx.layer_statistics(arch.resnet18(width=4), X, [LAYER])[LAYER]


def _capture(net: torch.nn.Module) -> None:
    with nx.capture(net, LAYER):
        net(X)


def _tracker(net: torch.nn.Module) -> None:
    with nx.SaturationTracker(net, [LAYER]):
        net(X)


CALLS: dict[str, Callable[[torch.nn.Module], Any]] = {
    "layers": lambda net: nx.list_layers(net, inputs=X),
    "activations": lambda net: nx.activations(net, X, LAYER),
    "capture": _capture,
    "SaturationTracker": _tracker,
    "layer_statistics": lambda net: nx.layer_statistics(net, X, [LAYER]),
    "projected_outputs": lambda net: nx.projected_outputs(net, X, LAYER, _stats(), ks=[1, 2]),
    "delta_curve": lambda net: nx.delta_curve(net, X, LAYER, _stats(), deltas=[0.9], labels=Y),
    "probe_accuracy": lambda net: nx.probe_accuracy(net, (X, Y), (X, Y), [LAYER]),
    "similarity_grid": lambda net: nx.similarity_grid([net], X, [LAYER], progress=False),
    "model_similarity": lambda net: nx.model_similarity(net, arch.resnet18(width=4), X, [LAYER], progress=False),
    "gradient": lambda net: nx.gradient(net, X, 0).attribution,
    "gradient_x_input": lambda net: nx.gradient_x_input(net, X, 0).attribution,
    "smoothgrad": lambda net: nx.smoothgrad(net, X, 0, n_samples=2).attribution,
    "integrated_gradients": lambda net: nx.integrated_gradients(net, X, 0, steps=2).attribution,
    "lrp": lambda net: nx.lrp(net, X, 0),
    "rde": lambda net: nx.rde(net, X, 0, steps=2, n_noise=2, fractions=2, n_eval=2, n_random=1, progress=False),
    "continuity": lambda net: nx.continuity(lambda z: nx.gradient(net, z, 0).attribution, X, shifts=[0, 1]),
    "maximize_activation": lambda net: nx.maximize_activation(net, LAYER, 0, (3, 16, 16), steps=2, progress=False),
    "top_activating": lambda net: nx.top_activating(net, X, LAYER, 0, k=2),
    "decompose_complexity": lambda net: nx.decompose_complexity(
        net, (X, Y), (X, Y), LAYER, orders=(1,), epochs=1, reference_model=False, progress=False
    ),
}


@pytest.mark.parametrize("entry", list(CALLS))
def test_meta_device_model_is_refused_clearly(entry: str) -> None:
    net = _meta()
    with pytest.raises(ValueError, match="meta"):
        with untouched(net):
            CALLS[entry](net)
