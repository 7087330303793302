"""Patch-grid maps: a vision transformer's per-token scores placed on its patch grid and shown at image size.

A ViT cuts an image ``(C, H, W)`` into a grid of ``gh × gw`` patches of ``H/gh × W/gw`` pixels and adds a few
*extra* tokens (a class token, register tokens) in front of the patch tokens. A per-token score (attention
rollout, a relevance summed per token) becomes an image map by dropping the extra tokens, laying the patch
scores out row by row on the grid and repeating each one over its patch's pixels (nearest-neighbour
upsampling: every pixel of a patch carries the patch's score, nothing is interpolated).

:func:`patch_grid` infers the grid from the token count and the image size; :func:`upsample_patch_map` turns a
``(N, gh, gw)`` map into ``(N, H, W)``; :func:`image_map` is what the views call on any map they are given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["patch_grid", "upsample_patch_map", "image_map", "MAX_EXTRA_TOKENS"]

#: Extra (non-patch) tokens :func:`patch_grid` considers: a class token, a distillation token, registers.
MAX_EXTRA_TOKENS = 8


def _check_grid(grid: Any, argname: str = "grid") -> tuple[int, int]:
    if (
        not isinstance(grid, Sequence) or isinstance(grid, str) or len(grid) != 2
        or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid)
    ):
        raise TypeError(f"`{argname}` must be a pair of positive ints (rows, columns) of patches, got {grid!r}.")
    return int(grid[0]), int(grid[1])


def patch_grid(n_tokens: int, height: int, width: int, grid: Sequence[int] | None = None) -> tuple[int, tuple[int, int]]:
    """The number of extra tokens in front of the patch tokens, and the patch grid ``(gh, gw)``.

    Without ``grid``: the grid of square patches (``H/gh == W/gw``, both whole numbers of pixels) that uses
    the most tokens, leaving 0 to :data:`MAX_EXTRA_TOKENS` (8) extra tokens in front (a ViT with a class token on
    16×16 images with 4×4 patches: 17 tokens → 1 extra token, a 4×4 grid). With ``grid=(gh, gw)``: the extra
    tokens are the ``n_tokens − gh·gw`` in front. The patch tokens are read as the *last* ``gh·gw`` tokens,
    row by row.

    Examples
    --------
    >>> patch_grid(17, 16, 16)
    (1, (4, 4))
    >>> patch_grid(20, 32, 64, grid=(2, 8))   # 4 extra tokens (class + 3 registers), rectangular patches
    (4, (2, 8))
    """
    if grid is not None:
        gh, gw = _check_grid(grid)
        if gh * gw > n_tokens:
            raise ValueError(
                f"`grid`={gh, gw} has {gh * gw} patches but the attention has only {n_tokens} tokens; pass the grid "
                f"of patch tokens (rows, columns) the model cuts the {height}×{width} image into."
            )
        if height % gh or width % gw:
            raise ValueError(
                f"`grid`={gh, gw} does not divide the {height}×{width} image into whole patches (H % rows and "
                "W % columns must be 0)."
            )
        return n_tokens - gh * gw, (gh, gw)
    for extra in range(0, min(MAX_EXTRA_TOKENS, n_tokens - 1) + 1):
        n_patches = n_tokens - extra
        area = height * width / n_patches
        side = round(math.sqrt(area))
        if side >= 1 and side * side * n_patches == height * width and height % side == 0 and width % side == 0:
            return extra, (height // side, width // side)
    raise ValueError(
        f"Cannot place {n_tokens} tokens on a {height}×{width} image: no grid of square patches with 0 to "
        f"{MAX_EXTRA_TOKENS} extra (class/register) tokens in front fits. Pass the patch grid as `grid=(rows, "
        "columns)` — the patch tokens are read as the last rows·columns tokens."
    )


def upsample_patch_map(maps: torch.Tensor, height: int, width: int, argname: str = "maps") -> torch.Tensor:
    """``(N, gh, gw)`` patch scores repeated over each patch's pixels: ``(N, H, W)`` (nearest neighbour).

    Examples
    --------
    >>> upsample_patch_map(torch.tensor([[[1., 2.], [3., 4.]]]), 4, 4)[0]
    tensor([[1., 1., 2., 2.],
            [1., 1., 2., 2.],
            [3., 3., 4., 4.],
            [3., 3., 4., 4.]])
    """
    if maps.ndim != 3:
        raise ValueError(f"`{argname}` must be patch maps (N, rows, columns), got shape {tuple(maps.shape)}.")
    gh, gw = int(maps.shape[1]), int(maps.shape[2])
    if height % gh or width % gw:
        raise ValueError(
            f"`{argname}` has a {gh}×{gw} grid, which does not divide the {height}×{width} image into whole "
            "patches (H % rows and W % columns must be 0)."
        )
    return maps.repeat_interleave(height // gh, dim=1).repeat_interleave(width // gw, dim=2)


def image_map(maps: torch.Tensor, image_shape: Sequence[int], argname: str = "maps") -> torch.Tensor | None:
    """A map for images ``image_shape = (N, C, H, W)`` at image size, or ``None`` when it is no such map.

    ``(N, C, H, W)`` (per channel) and ``(N, H, W)`` maps are returned as they are; a patch map ``(N, gh, gw)``
    whose grid divides ``H × W`` is upsampled to ``(N, H, W)`` (:func:`upsample_patch_map`). Anything else
    gives ``None``, for the caller's own error.

    Examples
    --------
    >>> image_map(torch.ones(2, 4, 4), (2, 3, 16, 16)).shape
    torch.Size([2, 16, 16])
    >>> image_map(torch.ones(2, 5, 5), (2, 3, 16, 16)) is None
    True
    """
    n, h, w = int(image_shape[0]), int(image_shape[-2]), int(image_shape[-1])
    if tuple(maps.shape) == tuple(image_shape) or tuple(maps.shape) == (n, h, w):
        return maps
    if maps.ndim == 3 and maps.shape[0] == n and h % maps.shape[1] == 0 and w % maps.shape[2] == 0:
        return upsample_patch_map(maps, h, w, argname)
    return None
