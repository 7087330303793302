"""The activation-maximization package's own seams: ``layer_units``, the progress argument, hook removal,
and widgets reaching core through public names only."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.actmax import layer_units
from nbexplain.core.actmax.runner import Runner


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6 * 6, 7), nn.BatchNorm1d(7))


def _hooks(model: nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]


def test_layer_units_match_the_layer_output_and_leave_the_model_as_found() -> None:
    net = _net().train()
    net[3].register_forward_hook(lambda *a: None)
    before = copy.deepcopy(net.state_dict())
    hooks = _hooks(net)
    with torch.no_grad():
        conv = net[1](net[0](torch.zeros(2, 1, 8, 8)))
    assert layer_units(net, "1", (1, 8, 8)) == list(range(conv.shape[1])) == [0, 1, 2, 3, 4]
    assert layer_units(net, "4", [1, 8, 8]) == list(range(7))
    assert net.training and all(m.training for m in net.modules())  # BatchNorm stats untouched: ran in eval
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert _hooks(net) == hooks


def test_layer_units_is_what_unit_none_optimises() -> None:
    net = _net()
    res = nx.maximize_activation(net, "1", None, (1, 8, 8), (0, 1), steps=2, progress=False)
    assert res.units == layer_units(net, "1", (1, 8, 8))


def test_layer_units_with_a_fixed_second_input() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * gate

    assert layer_units(Gated(), "fc", (4,), inputs=(None, torch.ones(1, 3))) == [0, 1, 2]
    with pytest.raises(ValueError, match="inputs"):
        layer_units(Gated(), "fc", (4,), wrt=1)


def test_layer_units_errors_name_the_argument() -> None:
    net = _net()
    with pytest.raises(ValueError, match="conv9"):
        layer_units(net, "conv9", (1, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        layer_units(net, "1", (1, 0, 8))
    with pytest.raises(ValueError, match="input_shape"):
        layer_units(net, "1", (1, 2, 2))  # the model rejects it: a 3×3 convolution needs 3 pixels
    with pytest.raises(TypeError, match="layer"):
        layer_units(net, 1, (1, 8, 8))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_progress_is_none_true_or_false(bad: object) -> None:
    net = _net()
    with pytest.raises(TypeError, match="`progress`"):
        nx.maximize_activation(net, "1", 0, (1, 8, 8), steps=1, progress=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`progress`"):
        nx.top_activating(net, torch.rand(4, 1, 8, 8), "1", 0, progress=bad)  # type: ignore[arg-type]


def test_runner_removes_its_early_exit_hook_also_when_a_pass_raises() -> None:
    class Flaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.calls = nn.Linear(3, 3), nn.Linear(3, 3), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("second pass fails")
            return self.b(self.a(x))

    model = Flaky()
    with pytest.raises(RuntimeError, match="second pass"), Runner(model, ["a"], early_exit=True) as run:
        out = run(nx.Inputs(torch.ones(2, 3)))
        assert out["a"].shape == (2, 3)
        run.arm_early_exit(["a"])
        assert len(model.a._forward_hooks) == 2  # the capture and the early exit
        run(nx.Inputs(torch.ones(2, 3)))
    assert _hooks(model) == [0, 0, 0]


def test_widgets_import_no_private_core_names() -> None:
    root = Path(nx.__file__).parent / "widgets"
    private = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and "core" in (node.module or ""):
                private += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []
