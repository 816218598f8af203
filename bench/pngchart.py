"""A tiny pure-Python PNG canvas: filled rectangles and text in a 3x5 pixel
font, written with zlib and struct only (the bench needs no plotting library).
chart.py draws the report's chart on it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

Color = tuple[int, int, int]
INK: Color = (40, 40, 40)

# 3x5 glyphs (rows top to bottom); text is drawn lower-case, unknown characters as spaces.
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111",
    "a": "010101111101101", "b": "110101110101110", "c": "011100100100011", "d": "110101101101110",
    "e": "111100110100111", "f": "111100110100100", "g": "011100101101011", "h": "101101111101101",
    "i": "111010010010111", "j": "001001001101010", "k": "101101110101101", "l": "100100100100111",
    "m": "101111111101101", "n": "110101101101101", "o": "010101101101010", "p": "110101110100100",
    "q": "010101101011001", "r": "110101110101101", "s": "011100010001110", "t": "111010010010010",
    "u": "101101101101111", "v": "101101101101010", "w": "101101111111101", "x": "101101010101101",
    "y": "101101010010010", "z": "111001010100111",
    "-": "000000111000000", ".": "000000000000010", ",": "000000000010100", ":": "000010000010000",
    "/": "001001010100100", "(": "010100100100010", ")": "010001001001010", "=": "000111000111000",
    "<": "001010100010001", ">": "100010001010100", "+": "000010111010000", "%": "101001010100101",
    "_": "000000000000111", "|": "010010010010010", "*": "000101010101000", "'": "010010000000000",
}
_ALIASES = {"×": "x", "≤": "<", "≥": ">", "–": "-", "—": "-"}
ADVANCE = 4  # glyph width plus one column of space, in font pixels


class Canvas:
    def __init__(self, w: int, h: int, background: Color = (255, 255, 255)) -> None:
        self.w, self.h = w, h
        self.px = bytearray(bytes(background) * (w * h))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        if x1 <= x0:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def vline(self, x: int, y0: int, y1: int, color: Color, width: int = 1, dash: int = 0) -> None:
        """A vertical line; ``dash`` > 0 draws dashes of that length with equal gaps."""
        if not dash:
            self.rect(x, y0, x + width, y1, color)
            return
        for y in range(y0, y1, 2 * dash):
            self.rect(x, y, x + width, min(y + dash, y1), color)

    def text(self, x: int, y: int, s: str, color: Color = INK, scale: int = 2) -> None:
        """``s`` with its top-left corner at (x, y); each font pixel is ``scale`` pixels square."""
        for ch in s.lower():
            glyph = _FONT.get(_ALIASES.get(ch, ch))
            if glyph:
                for r in range(5):
                    for c in range(3):
                        if glyph[r * 3 + c] == "1":
                            self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, color)
            x += ADVANCE * scale

    @staticmethod
    def text_width(s: str, scale: int = 2) -> int:
        return max(0, len(s) * ADVANCE * scale - scale)

    def save(self, path: Path) -> None:
        stride = self.w * 3
        raw = b"".join(b"\x00" + bytes(self.px[y * stride:(y + 1) * stride]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
        Path(path).write_bytes(png)
