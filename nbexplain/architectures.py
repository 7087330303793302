"""Hand-written copies of the architectures people bring, for tests, benchmarks and lessons.

Nothing is downloaded: the weights are random (seeded), and :func:`settle_batch_norm` gives batch-norm layers
non-trivial running statistics, so that eval-mode batch norm is not the identity. The ResNet blocks follow
torchvision's code structure exactly (``ReLU(inplace=True)``, ``out += identity``), because that structure is
what breaks naive hooks and LRP: the same in-place writes, the same module names (``layer2.0.downsample.1``).

- :func:`resnet18` / :class:`BasicBlock` / :class:`Bottleneck`: torchvision-style residual networks.
- :func:`vit`: a small vision transformer (patch conv, class token, ``nn.TransformerEncoder``).
- :func:`text_transformer`: a small text classifier (embedding, class token, ``nn.TransformerEncoder``).
- :func:`rnn_classifier`: ``nn.Embedding`` → LSTM or GRU → a linear head, on integer token ids.
- :class:`TupleOutput`, :class:`DictOutput`: models that return ``(logits, features)`` or ``{"logits": …}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet_bottleneck",
    "ViT",
    "vit",
    "TextTransformer",
    "text_transformer",
    "RNNClassifier",
    "rnn_classifier",
    "TupleOutput",
    "DictOutput",
    "settle_batch_norm",
]


def _conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: conv-bn-relu-conv-bn, ``out += identity``, in-place ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck block (1×1, 3×3, 1×1; expansion 4), in-place ReLU and residual add."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """torchvision's ResNet stem (7×7 conv, bn, relu, max pool), four stages, average pool and ``fc``."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks: Sequence[int],
        n_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(block, width, blocks[0])
        self.layer2 = self._stage(block, 2 * width, blocks[1], stride=2)
        self.layer3 = self._stage(block, 4 * width, blocks[2], stride=2)
        self.layer4 = self._stage(block, 8 * width, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, block: Any, planes: int, n: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def settle_batch_norm(model: nn.Module, example: torch.Tensor, seed: int = 0, passes: int = 3) -> nn.Module:
    """Give every batch-norm layer non-trivial running statistics and affine parameters; return ``model`` in eval mode.

    Runs ``passes`` train-mode forward passes on ``example`` (momentum 1 for the last one), then draws the
    affine weights and biases from a seeded generator, so eval-mode batch norm is a real affine map.
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(example)
        for m in norms:
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def resnet18(n_classes: int = 10, in_channels: int = 3, width: int = 64, seed: int | None = 0) -> ResNet:
    """A torchvision-identical ResNet-18 (``width=64``), random weights; eval mode, batch norm settled on noise.

    Examples
    --------
    >>> from nbexplain.architectures import resnet18
    >>> net = resnet18(width=8)
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    if seed is not None:
        torch.manual_seed(seed)
    net = ResNet(BasicBlock, (2, 2, 2, 2), n_classes, in_channels, width)
    return settle_batch_norm(net, torch.randn(8, in_channels, 32, 32), seed or 0)  # type: ignore[return-value]


def resnet_bottleneck(n_classes: int = 10, in_channels: int = 3, width: int = 8, seed: int | None = 0) -> ResNet:
    """A small ResNet of bottleneck blocks (one per stage), eval mode, batch norm settled."""
    if seed is not None:
        torch.manual_seed(seed)
    net = ResNet(Bottleneck, (1, 1, 1, 1), n_classes, in_channels, width)
    return settle_batch_norm(net, torch.randn(8, in_channels, 32, 32), seed or 0)  # type: ignore[return-value]


class ViT(nn.Module):
    """A small vision transformer: patch conv, class token, learned positions, pre-norm encoder, head on the class token."""

    def __init__(
        self, image: int = 16, patch: int = 4, in_channels: int = 1, dim: int = 16, depth: int = 2,
        heads: int = 2, n_classes: int = 10,
    ) -> None:
        super().__init__()
        n_tokens = (image // patch) ** 2 + 1
        self.patch = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_tokens, dim))
        self.dropout = nn.Dropout(0.0)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        t = self.norm(self.encoder(self.dropout(t)))
        return self.head(t[:, 0])


def vit(seed: int | None = 0, **kwargs: Any) -> ViT:
    """A small :class:`ViT` (16×16 single-channel images by default), eval mode."""
    if seed is not None:
        torch.manual_seed(seed)
    return ViT(**kwargs).eval()


class TextTransformer(nn.Module):
    """Token ids ``(N, T)`` → ``emb`` (``nn.Embedding``) + a class token + learned positions (added in ``forward``)
    → a pre-norm ``nn.TransformerEncoder`` (GELU) → ``norm`` → ``head`` on the class token."""

    def __init__(
        self, vocab: int = 32, length: int = 8, dim: int = 32, depth: int = 2, heads: int = 2, n_classes: int = 2
    ) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, length + 1, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        t = self.emb(ids)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos[:, : t.shape[1] + 1]
        return self.head(self.norm(self.encoder(t))[:, 0])


def text_transformer(seed: int | None = 0, **kwargs: Any) -> TextTransformer:
    """A small :class:`TextTransformer` (32-token vocabulary, 8 tokens, 2 classes by default), eval mode."""
    if seed is not None:
        torch.manual_seed(seed)
    return TextTransformer(**kwargs).eval()


class RNNClassifier(nn.Module):
    """Token ids ``(N, T)`` → ``emb`` (``nn.Embedding``) → ``rnn`` (LSTM or GRU, batch first) → ``head`` on the last step."""

    def __init__(self, vocab: int = 50, dim: int = 16, hidden: int = 24, n_classes: int = 4, cell: str = "lstm") -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        seq, _ = self.rnn(self.emb(ids))
        return self.head(seq[:, -1])


def rnn_classifier(cell: str = "lstm", seed: int | None = 0, **kwargs: Any) -> RNNClassifier:
    """An :class:`RNNClassifier` with an LSTM (``cell="lstm"``) or GRU (``cell="gru"``), eval mode."""
    if seed is not None:
        torch.manual_seed(seed)
    return RNNClassifier(cell=cell, **kwargs).eval()


class TupleOutput(nn.Module):
    """Wraps a classifier body and head; returns ``(logits, features)``."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        f = self.body(x)
        return self.head(f), f


class DictOutput(TupleOutput):
    """Like :class:`TupleOutput`, but returns ``{"logits": …, "features": …}``."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]  # noqa: D102
        f = self.body(x)
        return {"logits": self.head(f), "features": f}
