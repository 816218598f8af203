"""The report's chart: every side-by-side scenario's ratio (median mbuild /
median bake) as a horizontal bar, against the 1.0 line (bake's time) and the
0.8 line (the incremental target), with each scenario's own target marked on
its row. One look says where the project stands: green meets its target,
orange is ahead of bake but misses it, red is behind bake.
"""

from __future__ import annotations

import math
from pathlib import Path

from pngchart import INK, Canvas

W = 900
ROW = 30
TOP, BOTTOM = 56, 70
LABELS = 230  # left column: the scenario names
RIGHT = 110  # room for the value after the longest bar
SCALE = 2

MEETS = (56, 158, 76)
AHEAD = (237, 160, 45)
BEHIND = (208, 62, 52)
NO_TARGET = (150, 150, 150)
GRID = (228, 228, 228)
LINE_08 = (30, 110, 50)
WHITE = (255, 255, 255)


def colour(r: float, max_ratio: float | None) -> tuple[int, int, int]:
    if max_ratio is None:
        return NO_TARGET
    if r <= max_ratio:
        return MEETS
    return AHEAD if r < 1 else BEHIND


def ratio_chart(path: Path, rows: list[tuple[str, float | None, float | None]], title: str) -> None:
    """rows: (label, ratio or None if it failed, the row's target ratio or None)."""
    h = TOP + ROW * max(1, len(rows)) + BOTTOM
    c = Canvas(W, h)
    x0, x1 = LABELS, W - RIGHT
    top_ratio = max([1.2] + [r for _, r, _ in rows if r is not None])
    x_max = min(2.0, math.ceil(top_ratio * 1.05 / 0.2) * 0.2)

    def x_of(v: float) -> int:
        return int(x0 + min(v, x_max) / x_max * (x1 - x0))
    plot_top, plot_bottom = TOP, TOP + ROW * len(rows)
    c.text(10, 10, title, scale=SCALE)
    c.text(10, 28, "mbuild / bake, median wall time: lower is better", scale=SCALE)
    steps = int(round(x_max / 0.2))
    for i in range(steps + 1):
        v = i * 0.2
        x = x_of(v)
        c.vline(x, plot_top, plot_bottom, GRID)
        label = f"{v:.1f}"
        c.text(x - Canvas.text_width(label) // 2, plot_bottom + 6, label, scale=SCALE)
    c.vline(x0, plot_top, plot_bottom, INK)
    for i, (label, r, max_ratio) in enumerate(rows):
        y = plot_top + i * ROW
        c.text(10, y + ROW // 2 - 5, label[:26], scale=SCALE)
        if r is not None:
            c.rect(x0 + 1, y + 6, x_of(r), y + ROW - 6, colour(r, max_ratio))
    for v, colour_, dash in ((1.0, INK, 0), (0.8, LINE_08, 5)):
        x = x_of(v)
        c.vline(x - 1, plot_top - 6, plot_bottom, colour_, width=2, dash=dash)
        c.text(x - Canvas.text_width(f"{v:.1f}") // 2, plot_top - 18, f"{v:.1f}", colour_, scale=SCALE)
    for i, (label, r, max_ratio) in enumerate(rows):
        y = plot_top + i * ROW
        if max_ratio is not None:
            c.rect(x_of(max_ratio) - 1, y + 2, x_of(max_ratio) + 2, y + ROW - 2, INK)
        value = "failed" if r is None else f"{r:.2f}" + (" >" if r > x_max else "")
        after = x0 if r is None else x_of(r)
        if max_ratio is not None and 0 <= x_of(max_ratio) - after < Canvas.text_width(value) + 8:
            after = x_of(max_ratio) + 2  # past the target mark, not through it
        # on white, so the reference lines do not run through the figure
        c.rect(after + 3, y + ROW // 2 - 7, after + 9 + Canvas.text_width(value), y + ROW // 2 + 7, WHITE)
        c.text(after + 6, y + ROW // 2 - 5, value, BEHIND if r is None else INK, scale=SCALE)
    y = plot_bottom + 30
    x = 10
    for swatch, text in ((MEETS, "meets its target"), (AHEAD, "ahead of bake, misses target"),
                         (BEHIND, "behind bake"), (NO_TARGET, "no target")):
        c.rect(x, y, x + 12, y + 12, swatch)
        c.text(x + 18, y + 1, text, scale=SCALE)
        x += 18 + Canvas.text_width(text) + 22
    c.rect(x, y - 2, x + 3, y + 14, INK)
    c.text(x + 10, y + 1, "the row's own target", scale=SCALE)
    c.save(path)
