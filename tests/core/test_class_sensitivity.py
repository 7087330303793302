"""Class sensitivity over training (SVCCA paper §4.3) against a float64 reference: the SVCCA of a layer with
a one-dimensional logit is the multiple correlation of that logit with the layer's top singular directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbexplain as nx


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))


def _reference(features: np.ndarray, logit: np.ndarray, keep: float) -> float:
    fc = features - features.mean(0)
    _, s, vt = np.linalg.svd(fc, full_matrices=False)
    frac = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.sum(frac < keep - 1e-12)) + 1
    reduced = fc @ vt[:k].T
    design = np.c_[np.ones(len(reduced)), reduced]
    coef, *_ = np.linalg.lstsq(design, logit, rcond=None)
    return float(np.corrcoef(design @ coef, logit)[0, 1])


@pytest.mark.parametrize("logits", ["final", "own"])
def test_values_match_the_multiple_correlation_reference(logits):
    nets = [_net(s) for s in range(3)]
    x = torch.randn(600, 5, generator=torch.Generator().manual_seed(0))
    res = nx.class_sensitivity(nets, x, ["1", "3"], logits=logits, keep=0.95, progress=False)
    assert res.values.shape == (3, 2, 4) and res.classes == [0, 1, 2, 3] and res.logits == logits
    final_out = nets[-1](x).detach().double().numpy()
    for t, net in enumerate(nets):
        with torch.no_grad():
            h1 = net[1](net[0](x)).double().numpy()
            h3 = net[3](net[2](net[1](net[0](x)))).double().numpy()
            own = net(x).double().numpy()
        ref_out = final_out if logits == "final" else own
        for i, h in enumerate((h1, h3)):
            for c in range(4):
                assert float(res.values[t, i, c]) == pytest.approx(_reference(h, ref_out[:, c], 0.95), abs=1e-9)


def test_own_logits_are_determined_by_the_last_hidden_layer():
    nets = {"a": _net(0), "b": _net(1)}
    res = nx.class_sensitivity(nets, torch.randn(400, 5), "3", logits="own", keep=1.0, classes=[1, 3])
    torch.testing.assert_close(res.values, torch.ones(2, 1, 2, dtype=torch.float64), atol=1e-9, rtol=0)
    assert res.checkpoint_labels == ["a", "b"] and res.classes == [1, 3]
    # against another checkpoint's logits it is not
    res = nx.class_sensitivity(nets, torch.randn(400, 5), "3", keep=1.0)
    assert float(res.values[0].max()) < 0.99


def test_state_dicts_files_and_model_hygiene(tmp_path):
    template = _net(0)
    template.train()
    states = [_net(s).state_dict() for s in range(2)]
    paths = []
    for s, state in enumerate(states):
        paths.append(tmp_path / f"epoch{s}.pt")
        torch.save(state, paths[-1])
    before = {k: v.clone() for k, v in template.state_dict().items()}
    x = torch.randn(300, 5)
    a = nx.class_sensitivity(states, x, ["1"], model=template)
    b = nx.class_sensitivity(paths, x, ["1"], model=template)
    torch.testing.assert_close(a.values, b.values)
    assert b.checkpoint_labels == ["epoch0", "epoch1"]
    assert template.training
    for k, v in template.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="model="):
        nx.class_sensitivity(states, x, ["1"])


def test_conv_layers_need_one_row_per_input():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    x = torch.randn(200, 1, 8, 8)
    res = nx.class_sensitivity([net], x, ["1"], conv="mean", keep=1.0)
    with torch.no_grad():
        pooled = net[1](net[0](x)).mean((2, 3)).double().numpy()
        out = net(x).double().numpy()
    assert float(res.values[0, 0, 2]) == pytest.approx(_reference(pooled, out[:, 2], 1.0), abs=1e-9)
    with pytest.raises(ValueError, match="conv"):
        nx.class_sensitivity([net], x, ["1"], conv="channels")


def test_learned_at():
    res = nx.ClassSensitivityResult(
        values=torch.tensor([[[0.2, 0.95]], [[0.95, 0.5]], [[0.8, 0.96]], [[0.93, 0.97]]], dtype=torch.float64),
        checkpoint_labels=["0", "1", "2", "3"], layers=["l"], classes=[0, 1], logits="final",
    )
    # class 0 reaches 0.9 at 1, drops at 2, and stays from 3 on; class 1 stays from 2 on
    assert res.learned_at(0.9).tolist() == [[3, 2]]
    assert res.learned_at(0.99).tolist() == [[-1, -1]]


def test_bad_arguments():
    nets = [_net(0)]
    x = torch.randn(50, 5)
    with pytest.raises(ValueError, match="classes"):
        nx.class_sensitivity(nets, x, "1", classes=[7])
    with pytest.raises(ValueError, match="logits"):
        nx.class_sensitivity(nets, x, "1", logits="first")
    with pytest.raises(ValueError, match="layers"):
        nx.class_sensitivity(nets, x, [])
    with pytest.raises(ValueError, match="n_classes"):
        nx.class_sensitivity([nn.Sequential(nn.Linear(5, 3), nn.Flatten(0))], x, "0")
