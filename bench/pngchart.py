"""A tiny pure-Python PNG bar chart: bench/run's fallback when matplotlib is missing.

Grouped bars (bake blue, mbuild orange) of the median wall time per scenario,
on a log scale, each with a thin min–max whisker, plus the scenario number
under each group in a 3x5 pixel font. Only zlib and struct are needed.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

W, H = 900, 420
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 50, 20, 20, 40
BAKE = (76, 114, 176)
MBUILD = (221, 132, 82)
GRID = (220, 220, 220)
AXIS = (60, 60, 60)

# 3x5 glyphs for digits, "-" and lowercase letters used in scenario names (rows top to bottom).
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "-": "000000111000000", ".": "000000000000010",
    "a": "010101111101101", "b": "110101110101110", "c": "011100100100011", "d": "110101101101110",
    "e": "111100110100111", "f": "111100110100100", "h": "101101111101101", "i": "111010010010111",
    "k": "101101110101101", "l": "100100100100111", "m": "101111111101101", "n": "110101101101101",
    "o": "010101101101010", "p": "110101110100100", "r": "110101110101101", "s": "011100010001110",
    "t": "111010010010010", "u": "101101101101111", "w": "101101111111101", "y": "101101010010010",
    "x": "101101010101101", "g": "011100101101011", "q": "010101101011001", "v": "101101101101010",
}


class Canvas:
    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def text(self, x: int, y: int, s: str, color=AXIS, scale: int = 2) -> None:
        for ch in s.lower():
            g = _FONT.get(ch)
            if g:
                for r in range(5):
                    for c in range(3):
                        if g[r * 3 + c] == "1":
                            self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color)
            x += 4 * scale

    def save(self, path: Path) -> None:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
        Path(path).write_bytes(png)


def bar_chart(path: Path, rows: list[tuple[str, dict | None, dict | None]]) -> None:
    """rows: (scenario name, bake stats, mbuild stats); stats have median/min/max seconds."""
    c = Canvas(W, H)
    vals = [s[k] for _, b, m in rows for s in (b, m) if s for k in ("min", "max")]
    lo = 10 ** math.floor(math.log10(max(min(vals), 1e-3)))
    hi = 10 ** math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo * 10
    plot_h = H - MARGIN_T - MARGIN_B

    def y_of(v: float) -> int:
        f = (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return int(H - MARGIN_B - f * plot_h)

    decade = lo
    while decade <= hi * 1.0001:
        y = y_of(decade)
        c.rect(MARGIN_L, y, W - MARGIN_R, y + 1, GRID)
        c.text(4, y - 5, f"{decade:g}", scale=2)
        decade *= 10
    c.rect(MARGIN_L, MARGIN_T, MARGIN_L + 1, H - MARGIN_B, AXIS)
    c.rect(MARGIN_L, H - MARGIN_B, W - MARGIN_R, H - MARGIN_B + 1, AXIS)
    group = (W - MARGIN_L - MARGIN_R) / max(1, len(rows))
    bw = int(group * 0.35)
    for i, (name, b, m) in enumerate(rows):
        x = int(MARGIN_L + i * group + group * 0.12)
        for j, (s, color) in enumerate(((b, BAKE), (m, MBUILD))):
            if not s:
                continue
            x0 = x + j * bw
            c.rect(x0, y_of(s["median"]), x0 + bw - 2, H - MARGIN_B, color)
            mid = x0 + bw // 2 - 1
            c.rect(mid, y_of(s["max"]), mid + 2, y_of(s["min"]) + 1, AXIS)
        c.text(x, H - MARGIN_B + 8, name[:10], scale=2)
    c.rect(W - 160, 8, W - 148, 20, BAKE)
    c.text(W - 142, 9, "bake", scale=2)
    c.rect(W - 90, 8, W - 78, 20, MBUILD)
    c.text(W - 72, 9, "mbuild", scale=2)
    c.save(path)
