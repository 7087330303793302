"""Small reference models and a quick trainer for lessons, tests and benchmarks.

Every model has readable layer names (``conv1``, ``fc1``, …) so that views label layers meaningfully,
and each trains to a useful accuracy on a 2-core CPU in seconds (figures in the README).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .core._base.hygiene import model_device
from .core._base.validation import check_model, check_positive_int, check_same_samples, check_tensor

__all__ = [
    "mlp",
    "cnn",
    "vgg_like",
    "Autoencoder",
    "dense_autoencoder",
    "conv_autoencoder",
    "train",
    "accuracy",
    "TrainHistory",
    "max_net",
]


def _seeded(seed: int | None) -> Any:
    """Context that makes weight initialisation reproducible without touching the global RNG."""
    return torch.random.fork_rng(devices=[]) if seed is not None else _Null()


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def mlp(
    in_features: int = 784,
    hidden: Sequence[int] = (256, 128, 64),
    n_classes: int = 10,
    seed: int | None = 0,
) -> nn.Sequential:
    """A ReLU multilayer perceptron that flattens its input first.

    Layers are named ``fc1 … fcK`` and ``out``; activations ``relu1 …``.

    Examples
    --------
    >>> import nbexplain as nx
    >>> from nbexplain.zoo import mlp
    >>> nx.list_layers(mlp(64, (32, 16)))
    ['fc1', 'fc2', 'out']
    """
    with _seeded(seed):
        if seed is not None:
            torch.manual_seed(seed)
        mods: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width = in_features
        for i, h in enumerate(hidden, start=1):
            mods += [(f"fc{i}", nn.Linear(width, h)), (f"relu{i}", nn.ReLU())]
            width = h
        mods.append(("out", nn.Linear(width, n_classes)))
        return nn.Sequential(OrderedDict(mods))


def cnn(
    in_channels: int = 1,
    n_classes: int = 10,
    image_size: int = 28,
    width: int = 16,
    hidden: int = 64,
    seed: int | None = 0,
) -> nn.Sequential:
    """A small CNN with batch norm: two conv–BN–ReLU–pool blocks and a two-layer dense head.

    Layers: ``conv1, bn1, relu1, pool1, conv2, bn2, relu2, pool2, flatten, fc1, relu3, out``.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.zoo import cnn
    >>> cnn()(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    with _seeded(seed):
        if seed is not None:
            torch.manual_seed(seed)
        side = image_size // 4
        return nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(in_channels, width, 3, padding=1)),
                    ("bn1", nn.BatchNorm2d(width)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(width, 2 * width, 3, padding=1)),
                    ("bn2", nn.BatchNorm2d(2 * width)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                    ("flatten", nn.Flatten()),
                    ("fc1", nn.Linear(2 * width * side * side, hidden)),
                    ("relu3", nn.ReLU()),
                    ("out", nn.Linear(hidden, n_classes)),
                ]
            )
        )


def vgg_like(
    in_channels: int = 3,
    n_classes: int = 10,
    image_size: int = 64,
    widths: Sequence[int] = (32, 64, 128),
    hidden: int = 256,
    batch_norm: bool = False,
    seed: int | None = 0,
) -> nn.Sequential:
    """A VGG-style CNN (the benchmark model of NOTES.md: 3×64×64 inputs): per width, two 3×3
    convolutions with ReLU and a 2×2 max-pool, then two dense layers.

    Layers: ``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}``, ``flatten``, ``fc1``, ``relu_fc``, ``out``.
    """
    with _seeded(seed):
        if seed is not None:
            torch.manual_seed(seed)
        mods: list[tuple[str, nn.Module]] = []
        c = in_channels
        for b, w in enumerate(widths, start=1):
            for i in (1, 2):
                mods.append((f"conv{b}_{i}", nn.Conv2d(c, w, 3, padding=1)))
                if batch_norm:
                    mods.append((f"bn{b}_{i}", nn.BatchNorm2d(w)))
                mods.append((f"relu{b}_{i}", nn.ReLU()))
                c = w
            mods.append((f"pool{b}", nn.MaxPool2d(2)))
        side = image_size // 2 ** len(widths)
        mods += [
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(c * side * side, hidden)),
            ("relu_fc", nn.ReLU()),
            ("out", nn.Linear(hidden, n_classes)),
        ]
        return nn.Sequential(OrderedDict(mods))


class Autoencoder(nn.Module):
    """An encoder followed by a decoder; the output has the input's shape.

    Attributes
    ----------
    encoder, decoder
        ``nn.Sequential`` stacks; their layers are addressed as ``encoder.fc1``, ``decoder.fc1`` …
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.decoder(self.encoder(x)).reshape(x.shape)


def dense_autoencoder(
    in_features: int = 784,
    hidden: Sequence[int] = (256, 64),
    code: int = 32,
    seed: int | None = 0,
) -> Autoencoder:
    """A dense autoencoder with a sigmoid output (inputs in [0, 1]).

    Encoder layers ``fc1 … fcK, code``; decoder layers mirror them and end in ``out``.
    """
    with _seeded(seed):
        if seed is not None:
            torch.manual_seed(seed)
        enc: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width = in_features
        for i, h in enumerate(hidden, start=1):
            enc += [(f"fc{i}", nn.Linear(width, h)), (f"relu{i}", nn.ReLU())]
            width = h
        enc.append(("code", nn.Linear(width, code)))
        dec: list[tuple[str, nn.Module]] = []
        width = code
        for i, h in enumerate(reversed(hidden), start=1):
            dec += [(f"fc{i}", nn.Linear(width, h)), (f"relu{i}", nn.ReLU())]
            width = h
        dec += [("out", nn.Linear(width, in_features)), ("sigmoid", nn.Sigmoid())]
        return Autoencoder(nn.Sequential(OrderedDict(enc)), nn.Sequential(OrderedDict(dec)))


def conv_autoencoder(in_channels: int = 1, width: int = 16, seed: int | None = 0) -> Autoencoder:
    """A convolutional autoencoder for images whose side is divisible by 4 (e.g. 28×28 MNIST).

    Encoder: ``conv1`` (stride 2), ``conv2`` (stride 2); decoder: ``deconv1``, ``deconv2`` and a sigmoid.
    """
    with _seeded(seed):
        if seed is not None:
            torch.manual_seed(seed)
        enc = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(in_channels, width, 3, stride=2, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("conv2", nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)),
                    ("relu2", nn.ReLU()),
                ]
            )
        )
        dec = nn.Sequential(
            OrderedDict(
                [
                    ("deconv1", nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("deconv2", nn.ConvTranspose2d(width, in_channels, 4, stride=2, padding=1)),
                    ("sigmoid", nn.Sigmoid()),
                ]
            )
        )
        return Autoencoder(enc, dec)


@dataclass
class TrainHistory:
    """Per-epoch training record returned by :func:`train`."""

    loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def __repr__(self) -> str:
        last = lambda v: f"{v[-1]:.4f}" if v else "–"  # noqa: E731
        return (
            f"TrainHistory(epochs={len(self.loss)}, loss={last(self.loss)}, "
            f"test_loss={last(self.test_loss)}, test_accuracy={last(self.test_accuracy)}, "
            f"seconds={self.seconds:.1f})"
        )


def _batched_eval(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for autoencoders) of ``model`` on ``(x, y)``, in eval mode."""
    dev = model_device(model)
    was = model.training
    model.eval()
    total, correct, n = 0.0, 0, 0
    try:
        with torch.no_grad():
            for s in range(0, x.shape[0], batch_size):
                xb = x[s : s + batch_size].to(dev)
                out = model(xb)
                if y is None:
                    total += float(nn.functional.mse_loss(out, xb, reduction="sum")) / xb[0].numel()
                else:
                    yb = y[s : s + batch_size].to(dev)
                    total += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
                    correct += int((out.argmax(1) == yb).sum())
                n += xb.shape[0]
    finally:
        model.train(was)
    return total / max(n, 1), (correct / n if y is not None and n else math.nan)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Classification accuracy of ``model`` on ``(x, y)`` in eval mode (the mode is restored)."""
    check_model(model, hooks=False, unwrap=False)  # runs the model as it is (compiled or scripted too)
    x = check_tensor(x, "x", min_ndim=2)
    y = check_tensor(y, "y", ndim=1, dtype_kind="int")
    check_same_samples(x, y)
    return _batched_eval(model, x, y, batch_size)[1]


def train(
    model: nn.Module,
    data: Any,
    y: torch.Tensor | None = None,
    *,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    test: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    seed: int = 0,
    progress: bool | None = None,
    callback: Callable[[int, nn.Module], Any] | None = None,
) -> TrainHistory:
    """Train a classifier (cross-entropy) or an autoencoder (MSE to its input) with Adam.

    Parameters
    ----------
    model
        The network; trained in place and left in the train/eval mode it had.
    data
        A :class:`nbexplain.data.Dataset` (its test split is evaluated each epoch) or an input tensor
        ``x`` (float inputs, or integer token ids for a model that embeds them).
    y
        Labels for ``x``. Omit them to train an autoencoder to reproduce its input.
    epochs, lr, batch_size, weight_decay
        Optimisation settings.
    test
        ``(x_test, y_test)`` to evaluate after every epoch (``y_test=None`` for autoencoders).
    seed
        Seeds the mini-batch order (and nothing global).
    progress
        None (default): a bar over batches once training has run 2 s; True: always; False: never.
    callback
        Called as ``callback(epoch, model)`` after every epoch (e.g. ``tracker.end_epoch`` or saving a
        checkpoint).

    Returns
    -------
    TrainHistory
        Mean training loss per epoch and, when a test set is known, test loss and accuracy.
    """
    from .core._base.machinery import progress_bar
    from .data import Dataset

    check_model(model, hooks=False, unwrap=False)  # runs the model as it is (compiled or scripted too)
    epochs = check_positive_int(epochs, "epochs", allow_zero=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(data, Dataset):
        if y is not None:
            raise TypeError("Pass either a Dataset or (x, y) tensors, not both (`y` was given).")
        x, y = data.x_train, data.y_train
        test = test if test is not None else (data.x_test, data.y_test)
    else:
        x = check_tensor(data, "data", min_ndim=2)
        if x.is_floating_point():
            x = check_tensor(x, "data", finite=True)
        elif x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"`data` must be a float tensor (inputs) or an integer tensor (token ids), got {x.dtype}.")
    if y is None and not x.is_floating_point():
        raise ValueError("`data` holds token ids (integers): pass labels `y` — an autoencoder reconstructs float inputs.")
    if y is not None:
        y = check_tensor(y, "y", ndim=1, dtype_kind="int")
        check_same_samples(x, y, ("data", "y"))
    autoencoder = y is None
    if autoencoder and test is not None:
        test = (test[0], None)
    dev = model_device(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("`model` has no trainable parameters (all requires_grad=False).")
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    hist = TrainHistory()
    was = model.training
    import time

    t0 = time.perf_counter()
    n_batches = math.ceil(x.shape[0] / batch_size)
    bar = progress_bar(total=epochs * n_batches, desc="train", progress=progress)
    try:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(x.shape[0], generator=gen)
            total, n = 0.0, 0
            for s in range(0, x.shape[0], batch_size):
                idx = order[s : s + batch_size]
                xb = x[idx].to(dev)
                out = model(xb)
                if autoencoder:
                    loss = nn.functional.mse_loss(out, xb)
                else:
                    loss = nn.functional.cross_entropy(out, y[idx].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * xb.shape[0]
                n += xb.shape[0]
                bar.update(1)
            hist.loss.append(total / n)
            if test is not None:
                tl, ta = _batched_eval(model, test[0], test[1], 512)
                hist.test_loss.append(tl)
                if not autoencoder:
                    hist.test_accuracy.append(ta)
                bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", test_acc=f"{ta:.3f}" if not autoencoder else "–")
            if callback is not None:
                callback(epoch, model)
    finally:
        bar.close()
        model.train(was)
        for p in params:
            p.grad = None
    hist.seconds = time.perf_counter() - t0
    return hist


def max_net() -> nn.Sequential:
    """The two-input teaching network ``f(x1, x2) = max(x1, x2)``, exact, built from ReLUs.

    ``max(a, b) = relu(a − b) + relu(b) − relu(−b)``: a hidden layer ``fc1`` (2 → 3, no bias) with rows
    ``(1, −1)``, ``(0, 1)``, ``(0, −1)``, a ReLU, and an output layer ``out`` (3 → 1, no bias) with
    weights ``(1, 1, −1)``. Input ``(N, 2)``, output ``(N, 1)`` (explain target 0).

    Montavon, Samek & Müller (2018) use this function to show that gradients (and simple Taylor
    expansions) jump on the diagonal ``x1 = x2`` while deep-Taylor / LRP-z⁺ relevance varies smoothly.

    Examples
    --------
    >>> import torch
    >>> from nbexplain.zoo import max_net
    >>> max_net()(torch.tensor([[1.0, 3.0], [2.0, -5.0]])).squeeze(1).detach()
    tensor([3., 2.])
    """
    fc1 = nn.Linear(2, 3, bias=False)
    out = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0], [0.0, -1.0]]))
        out.weight.copy_(torch.tensor([[1.0, 1.0, -1.0]]))
    return nn.Sequential(OrderedDict([("fc1", fc1), ("relu1", nn.ReLU()), ("out", out)]))
