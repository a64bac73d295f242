"""A metric's history as a line chart in braille dots (each character 2 dots wide, 4 high), for
`runyard metrics RUN KEY`: plain text that any terminal shows and any test can read, at any number of
points (each column keeps only its first, last, lowest and highest point)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

_DOTS = ((0x40, 0x80), (0x04, 0x20), (0x02, 0x10), (0x01, 0x08))  # bit of (row from the bottom, column)
_BLANK = 0x2800


def chart(
    xs: Sequence[float],
    ys: Sequence[float],
    width: int,
    height: int,
    label: Callable[[float], str],
    x_name: str,
) -> str:
    """Lines of at most `width` characters: y labels on the left, `height` rows of the plot, then the x
    axis with its first and last value and `x_name`. The points (xs[i], ys[i]) are finite, sorted by x."""
    if not xs:
        raise ValueError("nothing to chart")
    x0, x1, y0, y1 = xs[0], xs[-1], min(ys), max(ys)
    y_labels = [label(y1), label((y0 + y1) / 2), label(y0)] if y1 > y0 else ["", label(y0), ""]
    pad = max(map(len, y_labels))
    cols = max(width - pad - 2, 8)
    dots = _trace(xs, ys, cols * 2, height * 4)
    grid = [[0] * cols for _ in range(height)]
    for col, row in dots:
        grid[height - 1 - row // 4][col // 2] |= _DOTS[row % 4][col % 2]
    label_rows = {0: y_labels[0], (height - 1) // 2: y_labels[1], height - 1: y_labels[2]}
    lines = []
    for i, cells in enumerate(grid):
        text = label_rows.get(i, "")
        tick = "┤" if text else "│"
        lines.append(f"{text:>{pad}} {tick}" + "".join(chr(_BLANK + bits) for bits in cells).rstrip("⠀"))
    lines.append(" " * pad + " └" + "─" * cols)
    first, last = _x_label(x0, label), _x_label(x1, label) if x1 > x0 else ""
    room = max(cols - len(first) - len(last), 2)
    middle = x_name.center(room) if len(x_name) + 2 <= room else " " * room
    lines.append((" " * (pad + 2) + first + middle + last).rstrip())
    return "\n".join(line.rstrip() for line in lines)


def _x_label(x: float, label: Callable[[float], str]) -> str:
    return str(int(x)) if float(x).is_integer() else label(x)  # steps are whole numbers: all their digits


def _trace(xs: Sequence[float], ys: Sequence[float], width: int, height: int) -> set[tuple[int, int]]:
    """The dots (column, row from the bottom) of the line through the points on a `width` x `height` grid:
    per column a vertical stroke from its lowest to its highest point, joined to the previous column's
    last point. Each column's points are found by bisection and measured by min and max over their slice,
    so a million points cost a few C-speed passes rather than a Python loop."""
    x0, x1, y0, y1 = xs[0], xs[-1], min(ys), max(ys)
    y_scale = (height - 1) / (y1 - y0) if y1 > y0 else 0.0
    y_mid = 0.5 if y_scale else height // 2 + 0.5  # all values equal: the middle row

    def row(y: float) -> int:
        return int((y - y0) * y_scale + y_mid)

    if x1 > x0:  # column of x: the nearest of `width`, so column c holds x < x0 + (c + 0.5) * step
        step = (x1 - x0) / (width - 1)
        bounds = [bisect_left(xs, x0 + (c + 0.5) * step) for c in range(width - 1)] + [len(xs)]
    else:  # one x: the middle column
        bounds = [0] * (width // 2) + [len(xs)] * (width - width // 2)
    dots: set[tuple[int, int]] = set()
    previous: tuple[int, int] | None = None
    start = 0
    for col, end in enumerate(bounds):
        if end > start:
            part = ys[start:end]
            first, low, high = row(part[0]), row(min(part)), row(max(part))
            if previous is not None:
                _segment(dots, previous, (col, first))
            dots.update((col, r) for r in range(low, high + 1))
            previous = (col, row(part[-1]))
        start = end
    return dots


def _segment(dots: set[tuple[int, int]], start: tuple[int, int], end: tuple[int, int]) -> None:
    (c0, r0), (c1, r1) = start, end
    steps = max(abs(c1 - c0), abs(r1 - r0), 1)
    dots.update(
        (c0 + round((c1 - c0) * i / steps), r0 + round((r1 - r0) * i / steps)) for i in range(steps + 1)
    )
