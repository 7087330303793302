"""A PNG of the Playground's decision surface with its points, written with zlib only (no imaging library)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["surface_png", "encode_png", "CLASS_COLORS"]

#: The view's class colours (js/lib/playground_draw.ts): blue and orange, then Okabe–Ito colours.
CLASS_COLORS = np.array([[8, 119, 189], [245, 147, 34], [0, 158, 115], [204, 121, 167], [86, 180, 233],
                         [213, 94, 0], [240, 228, 66], [90, 90, 90]], dtype=np.float32)


def encode_png(rgb: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` uint8 image as PNG bytes (8-bit RGB, no filtering)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + np.ascontiguousarray(rgb[y]).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def surface_png(surface: np.ndarray, points: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                extent: tuple[float, float, float, float], scale: int = 4) -> bytes:
    """The surface ``(C, R, R)`` uint8 coloured as the view colours it (class colours mixed by probability,
    white where unsure), enlarged ``scale`` times, with each point as a disc of its class colour and a black
    cross over the misclassified ones."""
    p = surface.astype(np.float32) / 255.0
    c = p.shape[0]
    colors = CLASS_COLORS[np.arange(c) % len(CLASS_COLORS)]
    total = np.maximum(p.sum(0), 1e-6)
    mix = np.einsum("crw,ck->rwk", p, colors) / total[..., None]
    conf = np.clip((p.max(0) / total - 1 / c) / (1 - 1 / c), 0, 1)[..., None]
    rgb = 255 + (mix - 255) * (0.12 + 0.68 * conf)
    img = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
    size = img.shape[0]
    x0, x1, y0, y1 = extent
    yy, xx = np.mgrid[-4:5, -4:5]
    disc = xx**2 + yy**2 <= 12
    ring = (xx**2 + yy**2 <= 20) & ~disc
    cross = (np.abs(xx) == np.abs(yy))
    for (x, y), lab, pred in zip(points, labels, predicted, strict=True):
        px = int((x - x0) / (x1 - x0) * size)
        py = int((y1 - y) / (y1 - y0) * size)
        if not (4 <= px < size - 4 and 4 <= py < size - 4):
            continue
        patch = img[py - 4: py + 5, px - 4: px + 5]
        patch[ring] = 255
        patch[disc] = colors[int(lab) % len(colors)]
        if int(pred) != int(lab):
            patch[cross] = 0
    return encode_png(np.clip(img.round(), 0, 255).astype(np.uint8))
