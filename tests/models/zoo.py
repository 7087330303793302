"""The model zoo of tests/models: real architectures, small enough that every call takes milliseconds.

ResNets, the ViT, the RNN classifiers and the tuple/dict wrappers come from :mod:`nbexplain.architectures`;
the rest is written here. Every model is built from a fixed seed, in eval mode, with batch-norm running
statistics made non-trivial (:func:`nbexplain.architectures.settle_batch_norm`), so eval-mode batch norm is a
real affine map and a test that forgets it fails.

A :class:`Case` bundles a model factory with an input and the layer names the tests use:
``channel_layer`` (a channel-first map that is written in place later in ``forward`` where the
architecture does that), ``token_layer`` (an ``(N, T, D)`` output), ``hook_layer`` (where the hygiene
helper registers the user's full backward hook: a module whose output is never written in place).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nbexplain import architectures as arch

__all__ = [
    "Case",
    "CASES",
    "IMAGE_CASES",
    "OUTPUT_CASES",
    "conv_bn_relu",
    "Depthwise",
    "ConvTransposeAE",
    "UpsampleNet",
    "SharedTwice",
    "FunctionalResidual",
    "V",
    "CausalLM",
    "SegNet",
    "UNet",
    "ConvNeXtish",
    "PreActDenseNet",
    "build",
    "compiled",
    "scripted",
]


def conv_bn_relu() -> nn.Sequential:
    """The issue's first example: a batch norm whose output the in-place ReLU after it overwrites."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
    return arch.settle_batch_norm(net, torch.randn(8, 1, 8, 8))


class Depthwise(nn.Module):
    """Depthwise (groups = channels) and grouped (groups = 2) convolutions, with biases and batch norm."""

    def __init__(self, n_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.grouped = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.relu(self.bn(self.dw(torch.relu(self.stem(x)))))
        x = torch.relu(self.grouped(x))
        return self.fc(self.pool(x).flatten(1))


class ConvTransposeAE(nn.Module):
    """A convolutional autoencoder whose decoder upsamples with transposed convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, stride=2, padding=1)
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(6, 1, 4, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.decoder(self.encoder(x))


class UpsampleNet(nn.Module):
    """Conv, nearest-neighbour ``nn.Upsample``, conv, pooled head."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.conv2(self.up(torch.relu(self.conv1(x))))
        return self.head(self.pool(torch.relu(x)).flatten(1))


class SharedTwice(nn.Module):
    """One conv module applied twice in ``forward`` (weight sharing), each call followed by an in-place ReLU."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = torch.relu(self.stem(x))
        x = self.relu(self.shared(x))
        x = self.relu(self.shared(x))
        return self.head(self.pool(x).flatten(1))


class FunctionalResidual(nn.Module):
    """Residual adds written in ``forward`` (``x = x + f(x)``) around conv blocks, no residual modules.

    ``bias=False`` everywhere makes it positively homogeneous: ``Σ x ⊙ ∂f/∂x = f(x)`` (LRP conservation).
    """

    def __init__(self, n_classes: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1, bias=bias)
        self.f1 = nn.Conv2d(6, 6, 3, padding=1, bias=bias)
        self.f2 = nn.Conv2d(6, 6, 3, padding=1, bias=bias)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, n_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = torch.relu(self.stem(x))
        x = x + torch.relu(self.f1(x))
        x = torch.relu(x + self.f2(x))
        return self.fc(self.pool(x).flatten(1))


class UNet(nn.Module):
    """A small U-Net: two encoder stages (conv, max pooling / strided conv), a decoder that upsamples with
    ``ConvTranspose2d`` + batch norm (one called with ``output_size=``), skip connections by concatenation, a
    1×1 conv to per-pixel class maps, and their spatial mean as the class scores."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.enc2 = nn.Conv2d(4, 6, 3, padding=1)
        self.down = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1)  # output_padding from output_size=
        self.bn2 = nn.BatchNorm2d(6)
        self.dec2 = nn.Conv2d(12, 6, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.bn1 = nn.BatchNorm2d(4)
        self.dec1 = nn.Conv2d(8, 4, 3, padding=1)
        self.seg = nn.Conv2d(4, n_classes, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        s1 = torch.relu(self.enc1(x))
        s2 = torch.relu(self.enc2(self.pool(s1)))
        b = torch.relu(self.down(s2))
        u2 = torch.relu(self.bn2(self.up2(b, output_size=s2.shape[2:])))
        d2 = torch.relu(self.dec2(torch.cat([u2, s2], 1)))
        u1 = torch.relu(self.bn1(self.up1(d2)))
        d1 = torch.relu(self.dec1(torch.cat([u1, s1], 1)))
        return self.gap(self.seg(d1)).flatten(1)


class _ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise 7×7 conv, LayerNorm over channels (channels-last), Linear 4×, GELU,
    Linear, a learned per-channel layer scale, and the residual sum."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(0.5 * torch.randn(dim))  # trained layer scales differ in size and sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXtish(nn.Module):
    """A 2×2 patchify stem, two ConvNeXt blocks with layer scale, global mean, LayerNorm, linear head."""

    def __init__(self, n_classes: int = 4, dim: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 2, stride=2)
        self.blocks = nn.Sequential(_ConvNeXtBlock(dim), _ConvNeXtBlock(dim))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.norm(self.pool(self.blocks(self.stem(x))).flatten(1)))


class _DenseLayer(nn.Module):
    """A pre-activation dense layer: BN → ReLU → 1×1 conv → BN → ReLU → 3×3 conv, concatenated to its input.
    The first batch norm normalises a concatenation, not a conv's output: it cannot be merged."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, y], 1)


class PreActDenseNet(nn.Module):
    """A DenseNet in miniature: stem conv, a dense block of two pre-activation layers, a transition (BN, ReLU,
    1×1 conv, average pooling), another dense layer, final BN → ReLU → global mean → linear head."""

    def __init__(self, n_classes: int = 5, growth: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.block1 = nn.Sequential(_DenseLayer(8, growth), _DenseLayer(8 + growth, growth))
        c = 8 + 2 * growth
        self.transition = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, 8, 1, bias=False),
                                        nn.AvgPool2d(2))
        self.block2 = _DenseLayer(8, growth)
        self.norm = nn.BatchNorm2d(8 + growth)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 + growth, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.block2(self.transition(self.block1(self.stem(x))))
        return self.fc(self.pool(self.relu(self.norm(x))).flatten(1))


class V(nn.Module):
    """The issue's example: a patch conv, then one ``nn.TransformerEncoderLayer`` over the patch tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 8, 4, 4)
        self.block = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.block(self.patch(x).flatten(2).transpose(1, 2)).mean(1)


class CausalLM(nn.Module):
    """A GPT-style language model: token embedding plus learned positions (added in ``forward``), two causal
    transformer blocks, a final LayerNorm and a vocabulary head — a sequence output ``(N, T, V)``."""

    def __init__(self, vocab: int = 40, length: int = 10, dim: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.1 * torch.randn(length, dim))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, activation="gelu", batch_first=True)
            for _ in range(2)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.emb(ids) + self.pos[: ids.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], dtype=h.dtype, device=h.device)
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h))


class SegNet(nn.Module):
    """A small U-Net: conv–BN–ReLU, max-pool, conv, nearest upsampling, a skip concatenation and a 1×1 head —
    class maps ``(N, 4, H, W)`` at the input's resolution."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.down = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(6 + 8, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        skip = self.enc(x)
        deep = self.up(self.mid(self.down(skip)))
        return self.head(torch.cat([skip, deep], dim=1))


def _v() -> V:
    torch.manual_seed(0)
    return V().eval()


def _seeded(factory: Callable[[], nn.Module], example: torch.Tensor) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        net = factory()
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            arch.settle_batch_norm(net, example)
        return net.eval()

    return make


def _example(channels: int, size: int) -> torch.Tensor:
    """A batch to settle batch-norm statistics on, the same in every process: torch seeds its global generator
    at random in each process, so a batch drawn from it at import gave every run other statistics (and the
    depthwise ε → 0 test failed in some runs, its map's smallest entries off by 5e-4 relative)."""
    return torch.randn(8, channels, size, size, generator=torch.Generator().manual_seed(0))


def _tuple_model() -> nn.Module:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())
    return arch.settle_batch_norm(arch.TupleOutput(body, nn.Linear(4, 3)), torch.randn(8, 1, 8, 8))


def _dict_model() -> nn.Module:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())
    return arch.settle_batch_norm(arch.DictOutput(body, nn.Linear(4, 3)), torch.randn(8, 1, 8, 8))


@dataclass
class Case:
    """A model factory, an input batch and the names the tests need."""

    name: str
    make: Callable[[], nn.Module]
    shape: tuple[int, ...]
    channel_layer: str | None = None
    token_layer: str | None = None
    hook_layer: str | None = None
    output: Any = None
    tokens: bool = False
    vocab: int = 0
    n_classes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def x(self, n: int = 4, seed: int = 1) -> torch.Tensor:
        """A deterministic input batch of ``n`` samples (token ids for token models)."""
        g = torch.Generator().manual_seed(seed)
        if self.tokens:
            return torch.randint(0, self.vocab, (n, *self.shape), generator=g)
        return torch.randn((n, *self.shape), generator=g)


CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("resnet18", lambda: arch.resnet18(width=8), (3, 32, 32), channel_layer="layer1.0.bn2",
             hook_layer="fc", n_classes=10),
        Case("bottleneck", lambda: arch.resnet_bottleneck(width=4), (3, 32, 32), channel_layer="layer1.0.bn3",
             hook_layer="fc", n_classes=10),
        Case("vit", lambda: arch.vit(), (1, 16, 16), token_layer="encoder.layers.0", channel_layer="patch",
             hook_layer="head", n_classes=10),
        Case("V", _v, (1, 16, 16), token_layer="block", channel_layer="patch", hook_layer="block", n_classes=8),
        Case("lstm", lambda: arch.rnn_classifier("lstm"), (7,), token_layer="emb", hook_layer="head",
             tokens=True, vocab=50, n_classes=4),
        Case("gru", lambda: arch.rnn_classifier("gru"), (7,), token_layer="emb", hook_layer="head",
             tokens=True, vocab=50, n_classes=4),
        Case("tuple", _tuple_model, (1, 8, 8), channel_layer="body.1", hook_layer="head", output=0, n_classes=3),
        Case("dict", _dict_model, (1, 8, 8), channel_layer="body.1", hook_layer="head", output="logits",
             n_classes=3),
        Case("depthwise", _seeded(Depthwise, _example(3, 12)), (3, 12, 12), channel_layer="bn",
             hook_layer="fc", n_classes=5),
        Case("convtranspose", _seeded(ConvTransposeAE, _example(1, 16)), (1, 16, 16),
             channel_layer="decoder.0", hook_layer="decoder.2", n_classes=1),
        Case("upsample", _seeded(UpsampleNet, _example(1, 8)), (1, 8, 8), channel_layer="up",
             hook_layer="head", n_classes=4),
        Case("shared", _seeded(SharedTwice, _example(1, 8)), (1, 8, 8), channel_layer="shared",
             hook_layer="head", n_classes=3),
        Case("residual", _seeded(FunctionalResidual, _example(1, 8)), (1, 8, 8), channel_layer="f1",
             hook_layer="fc", n_classes=3),
        Case("conv_bn_relu", conv_bn_relu, (1, 8, 8), channel_layer="1", hook_layer="0", n_classes=4),
        # outputs that are not (N, classes): a sequence (N, T, V) and class maps (N, C, H, W)
        Case("causal_lm", _seeded(CausalLM, torch.zeros(1)), (10,), token_layer="blocks.0", hook_layer="head",
             tokens=True, vocab=40, n_classes=40),
        Case("segmentation", _seeded(SegNet, _example(3, 16)), (3, 16, 16), channel_layer="enc.1",
             hook_layer="head", n_classes=4),
        Case("unet", _seeded(UNet, _example(1, 12)), (1, 12, 12), channel_layer="bn2", hook_layer="seg",
             n_classes=3),
        Case("convnext", _seeded(ConvNeXtish, _example(3, 12)), (3, 12, 12),
             channel_layer="blocks.0.dwconv", hook_layer="head", n_classes=4),
        Case("densenet", _seeded(PreActDenseNet, _example(3, 8)), (3, 8, 8),
             channel_layer="block1.0.norm1", hook_layer="fc", n_classes=5),
    ]
}

#: Models whose output is not (N, classes): a language model (N, T, V) and a segmentation net (N, C, H, W).
OUTPUT_CASES = ["causal_lm", "segmentation"]

#: Classifiers on float images whose output is one tensor of class scores.
IMAGE_CASES = ["resnet18", "bottleneck", "vit", "V", "depthwise", "upsample", "shared", "residual", "unet", "convnext",
               "densenet"]


def build(name: str) -> tuple[nn.Module, Case]:
    """A fresh model of case ``name`` (eval mode) and its :class:`Case`."""
    case = CASES[name]
    return case.make(), case


# ---------------------------------------------------------------------------------------------------------
# The same models as people run them: compiled with torch.compile, or TorchScript.
# ---------------------------------------------------------------------------------------------------------


def compiled(name: str, backend: str = "eager", warm: bool = True) -> tuple[nn.Module, nn.Module, Case]:
    """``torch.compile`` of a fresh model of case ``name``: ``(compiled, eager, case)``, where ``eager`` is
    ``compiled._orig_mod``. ``warm``: called once without gradients first, as a user would before explaining
    it (so Dynamo has compiled and cached code that later hooks would not be seen by). ``backend="eager"``
    traces with Dynamo but does not generate code, which keeps tests fast."""
    eager, case = build(name)
    model = torch.compile(eager, backend=backend)
    if warm:
        with torch.no_grad():
            model(case.x(2))
    return model, eager, case


def scripted(name: str) -> tuple[nn.Module, nn.Module, Case]:
    """``torch.jit.script`` of a fresh model of case ``name``: ``(scripted, eager, case)``; the scripted
    module shares the eager module's Parameter objects."""
    eager, case = build(name)
    return torch.jit.script(eager), eager, case
