"""Linear probes (Alain & Bengio 2016): how linearly decodable is the task from each layer's features?

Each layer's features are computed once over the train and test inputs (cached in memory), standardised
with the training statistics, and a multinomial logistic regression is fitted by full-batch L-BFGS with a
small L2 penalty — deterministic and fast on a CPU for the layer widths of small networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._base.capturing import CONV_MODES, activations
from .._base.hygiene import preserved
from .._base.layer_select import list_layers
from .._base.machinery import check_progress, progress_bar
from .._base.model_inputs import Inputs, as_inputs
from .._base.validation import (
    check_choice,
    check_finite,
    check_model,
    check_positive_int,
    check_same_samples,
    check_tensor,
    renamed_arguments,
)

__all__ = ["probe_accuracy", "fit_linear_probe", "ProbeFit"]


@dataclass
class ProbeFit:
    """A fitted linear probe: ``logits = ((x − mean) / scale) @ weight + bias``."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    train_accuracy: float
    test_accuracy: float | None

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Class index per row of ``features``."""
        z = (features.to(self.weight.dtype) - self.mean) / self.scale
        return (z @ self.weight + self.bias).argmax(dim=1)


def _pair(value: Any, argname: str) -> tuple[Inputs, torch.Tensor]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = f"a {type(value).__name__} of {len(value)}" if isinstance(value, (tuple, list)) else type(value).__name__
        raise TypeError(
            f"`{argname}` must be a pair (x, y) of inputs and integer labels, got {got}. For a model with "
            f"several inputs, group them: {argname}=((x, mask), y), or a dict / nx.Inputs as the first element."
        )
    x = value[0]
    if isinstance(x, list):
        x = tuple(x)
    batch = as_inputs(x, f"{argname}[0]")
    y = check_tensor(value[1], f"{argname}[1]", ndim=1, dtype_kind="int")
    if y.shape[0] != batch.n:
        raise ValueError(
            f"`{argname}[0]` has {batch.n} samples but `{argname}[1]` has {y.shape[0]}; both must hold the same "
            "samples in the same order (dimension 0)."
        )
    if batch.n == 0:
        raise ValueError(f"`{argname}` holds no samples.")
    return batch, y.long()


def fit_linear_probe(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    l2: float = 1e-3,
    max_iter: int = 100,
    n_classes: int | None = None,
    name: str = "features",
) -> ProbeFit:
    """Fit a softmax-regression probe on ``(n, d)`` features; report train (and test) accuracy.

    Parameters
    ----------
    x_train, y_train
        Features ``(n, d)`` and labels ``(n,)``.
    x_test, y_test
        Optional held-out features and labels.
    l2
        L2 penalty on the weights of the standardised features (mean over samples of the loss plus
        ``l2 · ‖W‖²``).
    max_iter
        L-BFGS iterations.
    n_classes
        Number of classes (default: ``max(label) + 1`` over train and test).
    name
        Used in error messages (a layer name).

    Examples
    --------
    >>> import torch
    >>> from nbexplain.core.feature_space.probes import fit_linear_probe
    >>> x = torch.randn(200, 5); y = (x[:, 0] > 0).long()
    >>> fit_linear_probe(x[:150], y[:150], x[150:], y[150:]).test_accuracy > 0.9
    True
    """
    x_train = check_tensor(x_train, name, ndim=2, dtype_kind="float")
    check_finite(x_train, name)
    y_train = check_tensor(y_train, "y_train", ndim=1, dtype_kind="int").long()
    check_same_samples(x_train, y_train, (name, "y_train"))
    max_iter = check_positive_int(max_iter, "max_iter")
    if n_classes is None:
        n_classes = int(y_train.max()) + 1
        if y_test is not None:
            n_classes = max(n_classes, int(y_test.max()) + 1)
    x = x_train.detach().float()
    mean = x.mean(0)
    scale = x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / scale
    d = z.shape[1]
    w = torch.zeros(d, n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")
    target = y_train.to(z.device)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z @ w + b, target) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    fit = ProbeFit(w.detach(), b.detach(), mean, scale, 0.0, None)
    fit.train_accuracy = float((fit.predict(x) == target).float().mean())
    if x_test is not None and y_test is not None:
        x_test = check_tensor(x_test, f"{name} (test)", ndim=2, dtype_kind="float")
        check_finite(x_test, f"{name} (test)")
        y_test = check_tensor(y_test, "y_test", ndim=1, dtype_kind="int").long()
        check_same_samples(x_test, y_test, (f"{name} (test)", "y_test"))
        fit.test_accuracy = float((fit.predict(x_test.float()) == y_test).float().mean())
    return fit


@renamed_arguments(eval="eval_mode")
def probe_accuracy(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    layers: str | Sequence[str] | None = None,
    *,
    conv: str = "mean",
    l2: float = 1e-3,
    max_iter: int = 100,
    batch_size: int = 256,
    eval_mode: bool = True,
    progress: bool | None = None,
) -> dict[str, float]:
    """Test accuracy of a linear probe trained on each layer's features.

    Parameters
    ----------
    model
        Any ``torch.nn.Module`` (its state is left as found).
    train, test
        ``(x, y)`` pairs of inputs and integer labels. For a model with several inputs ``x`` is a tuple
        (positional, ``model(x, mask)``), a dict (keyword) or ``nx.Inputs``: ``train=((x, mask), y)``. The
        labels never reach the model.
    layers
        Layer names; default every Linear and Conv layer.
    conv
        How conv maps become one feature vector per sample: ``"mean"`` (default; global average
        pooling), ``"max"`` or ``"flatten"`` (``"channels"`` is not allowed: probes need one vector per
        sample).
    l2, max_iter
        See :func:`fit_linear_probe`.
    batch_size
        Inputs per forward pass.
    eval_mode
        Read the features in eval mode (default; dropout off, batch-norm running statistics). The model's
        modes, and its batch-norm statistics, are restored afterwards either way.
    progress
        ``None`` (default): a progress bar once the work has run 2 s; ``True``: always; ``False``: never.

    Returns
    -------
    dict[str, float]
        Layer → test accuracy, in layer order.

    Examples
    --------
    >>> import torch, nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> x = torch.randn(300, 16); y = (x[:, 0] > 0).long()
    >>> acc = nx.probe_accuracy(mlp(16, (32,)), (x[:200], y[:200]), (x[200:], y[200:]))
    >>> sorted(acc), acc["fc1"] > 0.8
    (['fc1', 'out'], True)
    """
    model = check_model(model, what="nx.probe_accuracy")
    x_tr, y_tr = _pair(train, "train")
    x_te, y_te = _pair(test, "test")
    check_choice(conv, "conv", [c for c in CONV_MODES if c != "channels"])
    names = list_layers(model) if layers is None else layers
    names = [names] if isinstance(names, str) else list(names)
    n_classes = int(max(int(y_tr.max()), int(y_te.max()))) + 1
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_progress(progress)
    with preserved(model):
        options: dict[str, Any] = dict(conv=conv, batch_size=batch_size, eval_mode=eval_mode, progress=progress)
        f_tr = activations(model, x_tr, names, **options)
        f_te = activations(model, x_te, names, **options)
    out: dict[str, float] = {}
    for name in progress_bar(names, desc="linear probes", progress=progress):
        fit = fit_linear_probe(f_tr[name], y_tr, f_te[name], y_te, l2=l2, max_iter=max_iter,
                               n_classes=n_classes, name=f"activations of layer {name!r}")
        assert fit.test_accuracy is not None
        out[name] = fit.test_accuracy
    return out
