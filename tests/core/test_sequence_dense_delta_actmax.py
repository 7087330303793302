"""δ curves, activation maximization and the complexity task loss on sequence ``(N, T, V)`` and dense
``(N, C, H, W)`` outputs (issue 16).

delta_curve's labels follow the output's class axis (one per position, one per pixel) and it no longer guesses
from shapes that an output is a reconstruction of its input; maximize_activation's unit on a sequence head is a
(position, token) pair; decompose_complexity's cross-entropy reads a sequence's vocabulary on its last axis.
Values are checked against the projected outputs scored by hand, and the optimised
inputs run through the model again.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbexplain as nx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class PerPosition(nn.Module):
    """A per-position language-model head on float inputs: (N, T, 4) → (N, T, V=5)."""

    def __init__(self, vocab: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.head = nn.Linear(8, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(torch.relu(self.fc(x)))


class Recurrent(nn.Module):
    """A GRU over a float sequence with a vocabulary head: (N, T, 4) → (N, T, 50)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.head = nn.Linear(8, 50)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.rnn(x)[0])


def seq_case() -> tuple[nn.Module, torch.Tensor, nx.RunningMoments]:
    torch.manual_seed(0)
    model = PerPosition().eval()
    x = torch.randn(6, 6, 4)  # N == T: (N,) labels broadcast over positions without an error before
    return model, x, nx.layer_statistics(model, x, ["fc"])["fc"]


def seg_case() -> tuple[nn.Module, torch.Tensor, nx.RunningMoments]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()
    x = torch.randn(4, 3, 6, 6)  # class maps (N, 3, 6, 6): the shape of the RGB input
    return model, x, nx.layer_statistics(model, x, ["1"])["1"]


# ---- delta_curve --------------------------------------------------------------------------------------------


def test_sequence_labels_are_per_position_never_broadcast() -> None:
    model, x, st = seq_case()
    with pytest.raises(ValueError, match=r"\(N, T=6, V=5\).*one label per position, shape \(6, 6\)"):
        nx.delta_curve(model, x, "fc", st, deltas=[0.5, 1.0], labels=torch.randint(0, 5, (6,)))
    labels = torch.randint(0, 5, (6, 6), generator=torch.Generator().manual_seed(3))
    labels[0, :2] = -100  # padding
    curve = nx.delta_curve(model, x, "fc", st, deltas=[0.5, 1.0], labels=labels, ignore_index=-100)
    outs = nx.projected_outputs(model, x, "fc", st, ks=curve.ks.tolist())
    keep = labels != -100
    want = [float((o.argmax(-1) == labels)[keep].double().mean()) for o in outs]
    assert curve.metric == "accuracy" and curve.eigen.tolist() == pytest.approx(want, abs=0)
    with torch.no_grad():
        plain = model(x)
    assert curve.baseline == float((plain.argmax(-1) == labels)[keep].double().mean())
    with pytest.raises(ValueError, match=r"labels outside \[0, 4\].*ignore_index="):
        nx.delta_curve(model, x, "fc", st, deltas=[0.5], labels=labels)
    # an explicit reduction: the last position only, against (N,) labels
    last = labels[:, -1]
    curve = nx.delta_curve(model, x, "fc", st, deltas=[0.5], labels=last, output=lambda out: out[:, -1])
    assert float(curve.eigen[0]) == float((outs[0][:, -1].argmax(-1) == last).double().mean())


def test_dense_output_needs_labels_or_a_metric_and_is_never_compared_with_the_image() -> None:
    model, x, st = seg_case()
    with pytest.raises(ValueError, match="needs to know what to score.*metric='reconstruction'"):
        nx.delta_curve(model, x, "1", st, deltas=[0.5, 1.0])  # was MSE(logits, image)
    with pytest.raises(ValueError, match=r"\(N, C=3, H=6, W=6\).*shape \(4, 6, 6\)"):
        nx.delta_curve(model, x, "1", st, deltas=[0.5], labels=torch.zeros(4, dtype=torch.long))
    labels = torch.randint(0, 3, (4, 6, 6), generator=torch.Generator().manual_seed(4))
    curve = nx.delta_curve(model, x, "1", st, deltas=[0.3, 1.0], labels=labels)
    outs = nx.projected_outputs(model, x, "1", st, ks=sorted(set(curve.ks.tolist())))
    by_k = dict(zip(sorted(set(curve.ks.tolist())), outs, strict=True))
    want = [float((by_k[k].argmax(1) == labels).double().mean()) for k in curve.ks.tolist()]
    assert curve.eigen.tolist() == want
    with torch.no_grad():
        plain = model(x)
    agree = nx.delta_curve(model, x, "1", st, deltas=[0.3, 1.0], metric="agreement")
    assert agree.eigen.tolist() == [float((by_k[k].argmax(1) == plain.argmax(1)).double().mean()) for k in curve.ks.tolist()]
    assert agree.baseline == 1.0
    mse = nx.delta_curve(model, x, "1", st, deltas=[0.3], metric="output_mse")
    assert float(mse.eigen[0]) == pytest.approx(float((by_k[curve.ks.tolist()[0]].double() - plain.double()).pow(2).mean()))
    custom = nx.delta_curve(model, x, "1", st, deltas=[0.3], metric=lambda out, ref: (out - ref).abs().max())
    assert float(custom.eigen[0]) == pytest.approx(float((by_k[curve.ks.tolist()[0]] - plain).abs().max()))
    # reconstruction is a request, checked against the input's shape
    assert nx.delta_curve(model, x, "1", st, deltas=[1.0], metric="reconstruction").metric == "reconstruction"
    with pytest.raises(ValueError, match="only by metric='accuracy'"):
        nx.delta_curve(model, x, "1", st, deltas=[0.5], labels=labels, metric="agreement")


def test_reconstruction_needs_the_input_shape() -> None:
    model, x, st = seq_case()
    with pytest.raises(ValueError, match=r"output has shape \(6, 6, 5\) and the input \(6, 6, 4\)"):
        nx.delta_curve(model, x, "fc", st, deltas=[0.5], metric="reconstruction")
    with pytest.raises(ValueError, match="metric"):
        nx.delta_curve(model, x, "fc", st, deltas=[0.5], metric="mse")


# ---- maximize_activation ------------------------------------------------------------------------------------


def test_a_sequence_head_is_maximised_at_a_position_and_token() -> None:
    torch.manual_seed(0)
    model = Recurrent().eval()
    kw = dict(steps=4, progress=False, seed=0)
    for unit in (40, [5, 40], None):  # 40 was token 40's logit averaged over the positions
        with pytest.raises(ValueError, match=r"\(N, T=12, V=50\).*unit=\(-1, 40\)"):
            nx.maximize_activation(model, None, unit, (12, 4), **kw)
    res = nx.maximize_activation(model, None, [(-1, 40), (3, 2)], (12, 4), images_per_unit=2, **kw)
    assert res.units == [(-1, 40), (-1, 40), (3, 2), (3, 2)]
    with torch.no_grad():
        out = model(res.images.reshape(4, 12, 4))
    torch.testing.assert_close(res.final, torch.stack([out[0, -1, 40], out[1, -1, 40], out[2, 3, 2], out[3, 3, 2]]))
    assert float(res.trajectory[-1].mean()) > float(res.trajectory[0].mean())
    res = nx.maximize_activation(model, None, (-1, 40), (12, 4), objective="logit_minus_others", **kw)
    with torch.no_grad():
        o = model(res.images.reshape(1, 12, 4))[0, -1]
    torch.testing.assert_close(res.final, (o[40] - (o.sum() - o[40]) / 49).reshape(1))
    # averaging over positions is still there, when asked for by name
    res = nx.maximize_activation(model, None, 40, (12, 4), objective="channel", **kw)
    with torch.no_grad():
        torch.testing.assert_close(res.final, model(res.images.reshape(1, 12, 4))[:, :, 40].mean(1))
    with pytest.raises(ValueError, match=r"token 50 is outside the vocabulary axis \(V=50\)"):
        nx.maximize_activation(model, None, (0, 50), (12, 4), **kw)
    with pytest.raises(ValueError, match="outside the 12 positions"):
        nx.maximize_activation(model, None, (12, 0), (12, 4), **kw)


def test_class_logit_at_a_position_of_a_named_sequence_layer() -> None:
    torch.manual_seed(0)
    model = Recurrent().eval()
    obj = nx.objectives.class_logit("head", [7, 9], position=[0, -2])
    res = nx.maximize_activation(model, None, None, (12, 4), objective=obj, steps=3, progress=False)
    with torch.no_grad():
        out = model(res.images.reshape(2, 12, 4))
    torch.testing.assert_close(res.final, torch.stack([out[0, 0, 7], out[1, -2, 9]]))
    with pytest.raises(ValueError, match=r"12 positions.*position=-1"):
        nx.maximize_activation(model, None, None, (12, 4), objective=nx.objectives.class_logit("head", 7), steps=2,
                               progress=False)


# ---- decompose_complexity's task loss -------------------------------------------------------------------------


def test_cross_entropy_reads_a_sequence_output_vocabulary_last() -> None:
    from nbexplain.core.complexity.task import _resolve_loss

    out = torch.randn(3, 5, 5, dtype=torch.float64)  # (N, T=5, V=5): torch alone would read T as the classes
    y = torch.randint(0, 5, (3, 5), generator=torch.Generator().manual_seed(6))
    want = -torch.log_softmax(out, dim=-1).gather(2, y[..., None]).mean()
    loss = _resolve_loss("cross_entropy", y)
    torch.testing.assert_close(loss(out, y), want)
    seg = torch.randn(2, 3, 4, 4, dtype=torch.float64)  # dense maps: classes on axis 1, labels (N, H, W)
    ys = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(loss(seg, ys), -torch.log_softmax(seg, dim=1).gather(1, ys[:, None]).mean())
    model, x, _ = seq_case()
    labels = torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(N, T=6, V=5\).*shape \(N, 6\)"):
        nx.decompose_complexity(model, (x, labels), (x, labels), "fc",
                                orders=(1,), epochs=1, progress=False)
