"""Draw Guard Mode's brand icon (a shield with sound waves) as PNG, with numpy and zlib only."""

from __future__ import annotations

from pathlib import Path
import struct
import sys
import zlib

import numpy as np


def _png(rgba: np.ndarray) -> bytes:
    height, width, _ = rgba.shape
    raw = b"".join(b"\x00" + rgba[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def draw(size: int) -> np.ndarray:
    """Return the icon as an RGBA array of size x size (4x supersampled)."""
    ss = 4
    n = size * ss
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n  # 0..1
    cx = x - 0.5
    # Shield: flat top with rounded shoulders, sides curving to a point at the bottom.
    top, bottom = 0.08, 0.94
    half_width = np.where(
        y < 0.5, 0.40, 0.40 * np.sqrt(np.clip(1 - ((y - 0.5) / (bottom - 0.5)) ** 2, 0, 1))
    )
    shield = (y > top) & (y < bottom) & (np.abs(cx) < half_width)
    shoulder = (y < top + 0.06) & (np.abs(cx) > 0.34)
    shield &= ~(shoulder & (np.hypot(np.abs(cx) - 0.34, y - (top + 0.06)) > 0.06))
    # Sound waves: three arcs to the right of a small "speaker" dot.
    r = np.hypot(x - 0.36, y - 0.48)
    angle = np.abs(np.arctan2(y - 0.48, x - 0.36))
    waves = np.zeros_like(shield)
    for radius in (0.10, 0.19, 0.28):
        waves |= (np.abs(r - radius) < 0.028) & (angle < 0.85)
    dot = r < 0.055
    img = np.zeros((n, n, 4), np.float64)
    img[shield] = (3 / 255, 169 / 255, 244 / 255, 1.0)  # Home Assistant blue
    img[shield & (waves | dot)] = (1.0, 1.0, 1.0, 1.0)
    img = img.reshape(size, ss, size, ss, 4).mean(axis=(1, 3))
    return np.round(img * 255).astype(np.uint8)


def main() -> None:
    """Write icon.png (256) and icon@2x.png (512) into the brand folder given (or the default)."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "custom_components/guard_mode/brand")
    out.mkdir(parents=True, exist_ok=True)
    (out / "icon.png").write_bytes(_png(draw(256)))
    (out / "icon@2x.png").write_bytes(_png(draw(512)))


if __name__ == "__main__":
    main()
