"""The registry of named LRP composites: each name owns its parameters, users add their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import nbexplain as nx
from nbexplain.core.attribution.lrp.composites import CONVS, DENSE, get_composite

BUILTIN = (
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "attn_lrp",
    "cp_lrp",
)


@pytest.fixture
def registry() -> Iterator[None]:
    """Remove whatever a test registers."""
    before = list(nx.COMPOSITES)
    yield
    for name in list(nx.COMPOSITES):
        if name not in before:
            nx.unregister_composite(name)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
    ).double()


def _x() -> torch.Tensor:
    return torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1


def _by_hand(name: str, epsilon: float = 1e-6, gamma: float = 0.25, low=None, high=None) -> nx.Composite:
    """The composites of the table in composites.py, written out independently of the registry."""
    conv, first = {
        "epsilon": (nx.rules.Epsilon(epsilon), None),
        "epsilon_plus": (nx.rules.ZPlus(), None),
        "epsilon_plus_flat": (nx.rules.ZPlus(), nx.rules.Flat()),
        "epsilon_gamma_box": (nx.rules.Gamma(gamma), nx.rules.ZBox(low, high)),
        "epsilon_alpha2_beta1": (nx.rules.AlphaBeta(2.0, 1.0), None),
        "epsilon_alpha2_beta1_flat": (nx.rules.AlphaBeta(2.0, 1.0), nx.rules.Flat()),
        "attn_lrp": (nx.rules.Epsilon(epsilon), None),
        "cp_lrp": (nx.rules.Epsilon(epsilon), None),
    }[name]
    attention = name if name in ("attn_lrp", "cp_lrp") else None
    return nx.Composite(
        {CONVS: conv, DENSE: nx.rules.Epsilon(epsilon)}, first=first, name=name, epsilon=epsilon, attention=attention
    )


def test_the_builtin_names_in_their_order() -> None:
    assert tuple(nx.COMPOSITES) == BUILTIN
    assert nx.COMPOSITES == BUILTIN and len(nx.COMPOSITES) == 8 and nx.COMPOSITES[2] == "epsilon_plus_flat"
    assert "epsilon" in nx.COMPOSITES and "gamma" not in nx.COMPOSITES


@pytest.mark.parametrize("name", BUILTIN)
def test_named_composites_give_the_relevance_of_their_rules_written_out(name: str) -> None:
    net, x = _net(), _x()
    params = dict(epsilon=1e-3) | (dict(gamma=0.5, low=-1.0, high=1.0) if name == "epsilon_gamma_box" else {})
    got = nx.lrp(net, x, 2, composite=name, **params)
    want = nx.lrp(net, x, 2, composite=_by_hand(name, **params))
    assert torch.equal(got.attribution, want.attribution)
    assert {k: repr(v) for k, v in got.rules.items()} == {k: repr(v) for k, v in want.rules.items()}
    default = nx.lrp(net, x, 2, composite=name, **({"low": -1.0, "high": 1.0} if name == "epsilon_gamma_box" else {}))
    assert repr(default.rules["5"]) == repr(nx.rules.Epsilon(1e-6))  # left out: the composite's own default


def test_a_parameter_the_composite_does_not_take_is_refused_by_name() -> None:
    net, x = _net(), _x()
    with pytest.raises(TypeError, match=r"'epsilon' does not take `gamma` \(its parameters: epsilon=1e-06\)"):
        nx.lrp(net, x, 0, composite="epsilon", gamma=0.5)
    with pytest.raises(TypeError, match=r"'epsilon_plus_flat' does not take `low`"):
        nx.lrp(net, x, 0, composite="epsilon_plus_flat", low=0.0, high=1.0)
    with pytest.raises(TypeError, match=r"`gamma` applies to named composites only"):
        nx.lrp(net, x, 0, composite=nx.rules.ZPlus(), gamma=0.5)
    with pytest.raises(TypeError, match=r"`high` applies to named composites only"):
        nx.lrp(net, x, 0, composite={nn.Linear: nx.rules.Epsilon()}, high=1.0)
    # the parameters a composite does take, and defaults left alone, go through
    box = get_composite("epsilon_gamma_box", epsilon=1e-4, gamma=0.5, low=-2.0, high=3.0)
    assert repr(box.rule_for("2", net[2])) == repr(nx.rules.Gamma(0.5))
    assert repr(box.rule_for("5", net[5])) == repr(nx.rules.Epsilon(1e-4))
    assert repr(box.first) == repr(nx.rules.ZBox(-2.0, 3.0))
    assert repr(get_composite("epsilon", gamma=None).rule_for("5", net[5])) == repr(nx.rules.Epsilon(1e-6))


def test_unknown_names_are_refused_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"Unknown composite 'epsilon_pluss'. Did you mean 'epsilon_plus'"):
        get_composite("epsilon_pluss")


def test_a_registered_composite_gets_only_its_own_parameters(registry: None) -> None:
    calls = []

    def gamma_only(gamma: float = 0.25) -> nx.Composite:
        calls.append(gamma)
        return nx.Composite({(nn.Conv2d, nn.Linear): nx.rules.Gamma(gamma)}, name="gamma_only")

    nx.register_composite("gamma_only", gamma_only)
    assert nx.COMPOSITES[-1] == "gamma_only" and "gamma_only" in nx.COMPOSITES
    net, x = _net(), _x()
    got = nx.lrp(net, x, 1, composite="gamma_only", gamma=0.7)
    want = nx.lrp(net, x, 1, composite=nx.Composite({(nn.Conv2d, nn.Linear): nx.rules.Gamma(0.7)}))
    assert torch.equal(got.attribution, want.attribution) and calls == [0.7]
    with pytest.raises(TypeError, match=r"'gamma_only' does not take `epsilon` \(its parameters: gamma=0.25\)"):
        nx.lrp(net, x, 1, composite="gamma_only", epsilon=1e-3)
    # a notebook cell run again replaces the user's own builder
    nx.register_composite("gamma_only", lambda gamma=0.25: nx.Composite({nn.Linear: nx.rules.Gamma(gamma)}))
    assert nx.COMPOSITES.count("gamma_only") == 1
    assert get_composite("gamma_only").rule_for("0", net[0]) is None  # the new builder maps Linear only


def test_registering_checks_the_builder(registry: None) -> None:
    with pytest.raises(ValueError, match="built-in composite and cannot be replaced"):
        nx.register_composite("epsilon", lambda epsilon=1e-6: nx.Composite({}))
    with pytest.raises(TypeError, match="declare its parameters by name"):
        nx.register_composite("loose", lambda **kw: nx.Composite({}))
    with pytest.raises(TypeError, match="non-empty string"):
        nx.register_composite("", lambda: nx.Composite({}))
    with pytest.raises(TypeError, match="must be a function"):
        nx.register_composite("nothing", None)
    nx.register_composite("not_a_composite", lambda: {nn.Linear: nx.rules.Epsilon()})
    with pytest.raises(TypeError, match="returned dict, not an nx.Composite"):
        get_composite("not_a_composite")
    nx.register_composite("needs_gamma", lambda gamma: nx.Composite({nn.Linear: nx.rules.Gamma(gamma)}))
    with pytest.raises(TypeError, match=r"'needs_gamma' needs `gamma`"):
        get_composite("needs_gamma")
    assert repr(get_composite("needs_gamma", gamma=0.3).rule_for("l", nn.Linear(1, 1))) == repr(nx.rules.Gamma(0.3))
    with pytest.raises(ValueError, match="cannot be removed"):
        nx.unregister_composite("epsilon")
    nx.unregister_composite("needs_gamma")
    with pytest.raises(ValueError, match="No composite 'needs_gamma' is registered"):
        nx.unregister_composite("needs_gamma")
