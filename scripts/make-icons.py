"""Draws the site's icons (favicon, home-screen icons) as PNG with the standard library only, so
they can be redrawn without an imaging package: `.venv/bin/python scripts/make-icons.py`.
The shape is a white SIM card with a chip on the brand blue, the same as static/icons/icon.svg.
Written files are committed; docs/pages.md says where each one is linked."""

import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLUE = (11, 95, 255)
WHITE = (255, 255, 255)
CHIP = (242, 178, 51)
SAMPLES = 3  # per axis: an anti-aliased edge from a 3×3 grid per pixel


def colour_at(x: float, y: float, *, maskable: bool) -> tuple[int, int, int, int]:
    """The colour at (x, y) in a unit square."""
    # Maskable icons are cropped to a circle by the phone: keep the card within its safe zone.
    scale = 0.8 if maskable else 1.0
    cx, cy = (x - 0.5) / scale + 0.5, (y - 0.5) / scale + 0.5
    radius = 0.0 if maskable else 0.18
    # Rounded square background (full bleed when maskable).
    dx = max(abs(x - 0.5) - (0.5 - radius), 0.0)
    dy = max(abs(y - 0.5) - (0.5 - radius), 0.0)
    if radius and dx * dx + dy * dy > radius * radius:
        return (0, 0, 0, 0)
    left, right, top, bottom, cut = 0.3, 0.7, 0.2, 0.8, 0.12
    in_card = left <= cx <= right and top <= cy <= bottom and (cx - (right - cut)) <= (cy - top)
    if in_card and 0.38 <= cx <= 0.62 and 0.46 <= cy <= 0.7:
        return (*CHIP, 255)
    if in_card:
        return (*WHITE, 255)
    return (*BLUE, 255)


def draw(size: int, *, maskable: bool = False) -> bytes:
    rows = []
    for py in range(size):
        row = bytearray(b"\x00")  # PNG filter: none
        for px in range(size):
            total = [0, 0, 0, 0]
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    r, g, b, a = colour_at(
                        (px + (sx + 0.5) / SAMPLES) / size, (py + (sy + 0.5) / SAMPLES) / size, maskable=maskable
                    )
                    total[0] += r * a
                    total[1] += g * a
                    total[2] += b * a
                    total[3] += a
            alpha = total[3]
            if alpha:
                row += bytes((total[0] // alpha, total[1] // alpha, total[2] // alpha, alpha // SAMPLES**2))
            else:
                row += b"\x00\x00\x00\x00"
        rows.append(bytes(row))
    return png(size, b"".join(rows))


def png(size: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def ico(images: list[tuple[int, bytes]]) -> bytes:
    """An .ico holding PNG images (every browser since 2007 reads PNG inside ICO)."""
    out = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for size, data in images:
        out += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    return out + b"".join(data for _, data in images)


def main() -> None:
    icons = ROOT / "static" / "icons"
    root = ROOT / "static" / "root"  # served at / by WhiteNoise (WHITENOISE_ROOT)
    icons.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for size in (192, 512):
        (icons / f"icon-{size}.png").write_bytes(draw(size))
        (icons / f"icon-maskable-{size}.png").write_bytes(draw(size, maskable=True))
    touch = draw(180, maskable=True)  # iOS rounds the corners itself and shows no transparency
    (icons / "apple-touch-icon.png").write_bytes(touch)
    (root / "apple-touch-icon.png").write_bytes(touch)
    (root / "favicon.ico").write_bytes(ico([(16, draw(16)), (32, draw(32)), (48, draw(48))]))


if __name__ == "__main__":
    main()
