"""``masked_pool``: a model with two inputs, ``forward(x, mask=None)``, and its float64 reference.

Token features ``(N, T, D)`` (or token ids, with ``vocab``) → ``Linear`` → ``ReLU`` → the mean over the tokens
the mask keeps → ``pool`` (an ``nn.Identity``, so the pooled features can be captured) → ``Linear`` head. A row
whose mask keeps no token pools to exactly 0 (a sum over no token divided by 1), so a mask that does not reach
the model shows at once; without a mask every token is averaged. :func:`reference` recomputes the pooled
features and the logits in float64 from the weights, independently of nbexplain.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MaskedPool", "masked_pool", "masked_batch", "reference"]


class MaskedPool(nn.Module):
    """``forward(x, mask=None)``: masked mean pooling of per-token features, then a linear head."""

    def __init__(self, d: int = 5, hidden: int = 6, n_classes: int = 3, vocab: int = 0) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d) if vocab else None
        self.proj = nn.Linear(d, hidden)
        self.act = nn.ReLU()
        self.pool = nn.Identity()
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        h = self.act(self.proj(self.emb(x) if self.emb is not None else x))
        if mask is None:
            pooled = h.mean(1)
        else:
            m = mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(self.pool(pooled))


def masked_pool(vocab: int = 0, seed: int = 0) -> MaskedPool:
    """A seeded :class:`MaskedPool` in eval mode."""
    torch.manual_seed(seed)
    return MaskedPool(vocab=vocab).eval()


def masked_batch(n: int = 8, t: int = 4, d: int = 5, seed: int = 1, vocab: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(N, T, D)`` (token ids ``(N, T)`` with ``vocab``) and a bool mask ``(N, T)``: rows 2 and 5 keep
    no token, row 3 only its first, the others a seeded random subset (at least one token)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, t), generator=g) if vocab else torch.randn(n, t, d, generator=g)
    mask = torch.rand(n, t, generator=g) > 0.4
    mask[:, 0] = True
    mask[2] = False
    mask[min(5, n - 1)] = False
    mask[3] = torch.arange(t) == 0
    return x, mask


def reference(model: MaskedPool, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled features ``(N, H)`` and logits ``(N, C)`` in float64, straight from the weights."""
    w1, b1 = model.proj.weight.detach().double(), model.proj.bias.detach().double()
    w2, b2 = model.head.weight.detach().double(), model.head.bias.detach().double()
    e = model.emb.weight.detach().double()[x] if model.emb is not None else x.double()
    h = torch.relu(e @ w1.T + b1)
    if mask is None:
        pooled = h.mean(1)
    else:
        m = mask.double().unsqueeze(-1)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
    return pooled, pooled @ w2.T + b2
