"""Pictures for the console as inline SVG built here: no JavaScript, nothing the CSP must allow.

Every number is formatted by this module and every label escaped; styles come from the
console's stylesheet through class names (inline SVG obeys the page's CSS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from markupsafe import Markup, escape

WIDTH = 320
HEIGHT = 200
PAD_LEFT = 36
PAD_BOTTOM = 28
PAD_TOP = 10
PAD_RIGHT = 10


@dataclass(frozen=True, slots=True)
class Curve:
    """A precision-recall curve from scores and true labels (1 = spam)."""

    recall: list[float]
    precision: list[float]
    average_precision: float


def precision_recall(scores: Sequence[float], spam: Sequence[bool]) -> Curve | None:
    """The precision-recall curve over every threshold; None without both classes."""
    y = np.asarray(spam, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return None
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # One point per distinct score: ties are taken together, as a threshold takes them.
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_run]
    fp = (last_of_run + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / positives
    average = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return Curve(
        recall=[0.0, *recall.tolist()],
        precision=[float(precision[0]), *precision.tolist()],
        average_precision=average,
    )


def _x(value: float) -> float:
    return PAD_LEFT + value * (WIDTH - PAD_LEFT - PAD_RIGHT)


def _y(value: float) -> float:
    return HEIGHT - PAD_BOTTOM - value * (HEIGHT - PAD_BOTTOM - PAD_TOP)


def _frame(title: str, x_label: str, y_label: str, y_max: float, y_format: str) -> list[str]:
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{_x(0):.1f}" y1="{_y(0):.1f}" x2="{_x(1):.1f}" y2="{_y(0):.1f}"/>',
        f'<line class="axis" x1="{_x(0):.1f}" y1="{_y(0):.1f}" x2="{_x(0):.1f}" y2="{_y(1):.1f}"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        if y_format == ".0f" and tick == 0.5 and y_max % 2:
            continue  # a count axis gets no half-way tick that is not a whole number
        parts.append(
            f'<text class="tick" x="{_x(0) - 4:.1f}" y="{_y(tick) + 3:.1f}" text-anchor="end">'
            f"{escape(format(tick * y_max, y_format))}</text>"
        )
        parts.append(
            f'<line class="grid" x1="{_x(0):.1f}" y1="{_y(tick):.1f}" '
            f'x2="{_x(1):.1f}" y2="{_y(tick):.1f}"/>'
        )
    parts.append(
        f'<text class="label" x="{_x(0.5):.1f}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text class="label" x="10" y="{_y(0.5):.1f}" text-anchor="middle" '
        f'transform="rotate(-90 10 {_y(0.5):.1f})">{escape(y_label)}</text>'
    )
    return parts


def _x_ticks(labels: Sequence[tuple[float, str]]) -> list[str]:
    def anchor(at: float) -> str:
        return "start" if at <= 0.0 else "end" if at >= 1.0 else "middle"

    return [
        f'<text class="tick" x="{_x(at):.1f}" y="{_y(0) + 12:.1f}" text-anchor="{anchor(at)}">'
        f"{escape(text)}</text>"
        for at, text in labels
    ]


def pr_curve_svg(curve: Curve, title: str) -> Markup:
    """The precision-recall curve as a line over recall (x) and precision (y)."""
    parts = _frame(title, "recall", "precision", 1.0, ".1f")
    parts += _x_ticks([(0.0, "0"), (0.5, "0.5"), (1.0, "1")])
    points = " ".join(
        f"{_x(r):.1f},{_y(p):.1f}" for r, p in zip(curve.recall, curve.precision, strict=True)
    )
    parts.append(f'<polyline class="line spam" points="{points}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram_svg(
    spam_scores: Sequence[float], ham_scores: Sequence[float], title: str, bins: int = 20
) -> Markup:
    """Score histograms of the comments labelled spam and ham, side by side in each bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    spam_counts, _ = np.histogram(np.asarray(spam_scores, dtype=np.float64), bins=edges)
    ham_counts, _ = np.histogram(np.asarray(ham_scores, dtype=np.float64), bins=edges)
    top = max(1, int(spam_counts.max(initial=0)), int(ham_counts.max(initial=0)))
    parts = _frame(title, "score", "comments", float(top), ".0f")
    parts += _x_ticks([(0.0, "0"), (0.5, "0.5"), (1.0, "1")])
    width = (_x(1) - _x(0)) / bins / 2
    for i in range(bins):
        for k, (kind, counts) in enumerate((("ham", ham_counts), ("spam", spam_counts))):
            count = int(counts[i])
            if count == 0:
                continue
            x = _x(float(edges[i])) + k * width
            y = _y(count / top)
            parts.append(
                f'<rect class="bar {kind}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{_y(0) - y:.1f}"><title>{kind}: {count} with score '
                f"{edges[i]:.2f}–{edges[i + 1]:.2f}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def series_svg(
    days: Sequence[date], series: Sequence[tuple[str, Sequence[int]]], title: str
) -> Markup:
    """Counts per day as one line per series (`name`, counts aligned with `days`)."""
    top = max([1, *(max(values, default=0) for _, values in series)])
    parts = _frame(title, "day", "comments", float(top), ".0f")
    n = len(days)
    if n:
        ends = [(0.0, days[0].strftime("%d %b"))]
        if n > 1:
            ends.append((1.0, days[-1].strftime("%d %b")))
        parts += _x_ticks(ends)

    def at(i: int) -> float:
        return _x(i / (n - 1)) if n > 1 else _x(0.5)

    for name, values in series:
        css = escape(name.replace(" ", "-"))
        points = " ".join(f"{at(i):.1f},{_y(v / top):.1f}" for i, v in enumerate(values))
        if n > 1:
            parts.append(f'<polyline class="line {css}" points="{points}"/>')
        for i, v in enumerate(values):
            parts.append(
                f'<circle class="dot {css}" cx="{at(i):.1f}" cy="{_y(v / top):.1f}" r="2.5">'
                f"<title>{escape(name)}: {v} on {days[i].isoformat()}</title></circle>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
