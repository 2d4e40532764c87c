"""Server-side figures for the run report, as inline SVG built from plain strings.

No plotting library: the report must render without a front-end build step or extra
dependency, and a bar per cluster is simple enough to draw by hand. Every piece of text that
enters the SVG is escaped here, so callers may mark the result safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

#: Fill colour per review state of a cluster's summary ("none": no summary yet).
STATUS_COLOURS: dict[str, str] = {
    "validated": "#1a7f37",
    "pending": "#d29922",
    "rejected": "#cf222e",
    "none": "#8c959f",
}

#: Order in legends and counts.
STATUS_ORDER: tuple[str, ...] = ("validated", "pending", "rejected", "none")


@dataclass(frozen=True)
class ClusterMark:
    """One cluster as drawn: its number, size (members), review state and tooltip.

    ``status`` is one of :data:`STATUS_COLOURS`; ``href`` (optional) is where a click on the
    mark goes, e.g. the cluster's card ``#cluster-3``.
    """

    number: int
    size: int
    status: str
    label: str = ""
    href: str = ""


def nice_ticks(maximum: float, *, target: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least ``maximum``: steps of 1, 2 or 5 times a power of ten,
    about ``target`` of them. ``maximum <= 0`` gives ``[0, 1]``."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / max(target - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(maximum / step - 1e-9)
    return [i * step for i in range(count + 1)]


def _fmt(value: float) -> str:
    """Coordinates with at most two decimals, no trailing zeros (smaller SVG text)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def cluster_bars_svg(
    marks: Sequence[ClusterMark],
    *,
    width: int = 960,
    height: int = 260,
    title: str = "Cluster sizes by review status",
) -> SafeString:
    """A bar chart of cluster sizes, one ``<rect class="cluster-mark status-<status>">`` per
    cluster in the given order, coloured by review status, with a y axis in members.

    The SVG scales to its container (``viewBox``, width 100%); bars get thinner as clusters
    grow in number (10,000 clusters still give one mark each). Cluster numbers label the x
    axis, every one when there are few, else about 20 evenly spaced. Hovering a bar shows
    ``label`` (a ``<title>``); with ``href`` a bar is a link.

    Returns:
        the ``<svg>`` element as a safe string (all text escaped here).
    """
    left, right, top, bottom = 52.0, 12.0, 14.0, 40.0
    plot_w = width - left - right
    plot_h = height - top - bottom
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cluster-figure" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="{escape(title)}" data-marks="{len(marks)}">',
        f"<title>{escape(title)}</title>",
    ]
    if not marks:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
            f'class="figure-empty" fill="#57606a" font-size="14">No clusters in this run</text>'
        )
        parts.append("</svg>")
        return mark_safe("".join(parts))  # every text above is escaped

    ticks = nice_ticks(max(m.size for m in marks))
    y_max = ticks[-1]

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * value / y_max

    # grid and y axis
    parts.append('<g class="axis y-axis" font-size="11" fill="#57606a">')
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_fmt(left)}" x2="{_fmt(left + plot_w)}" y1="{_fmt(y)}" y2="{_fmt(y)}" '
            f'stroke="#d0d7de" stroke-width="{1 if tick == 0 else 0.6}"/>'
            f'<text x="{_fmt(left - 6)}" y="{_fmt(y + 4)}" text-anchor="end">{tick:g}</text>'
        )
    parts.append(
        f'<text transform="translate(13 {_fmt(top + plot_h / 2)}) rotate(-90)" '
        f'text-anchor="middle">members</text></g>'
    )

    n = len(marks)
    slot = min(plot_w / n, 72.0)  # few clusters: moderate bars, centred
    offset = left + (plot_w - slot * n) / 2
    gap = min(slot * 0.22, 6.0) if slot >= 3 else 0.0
    bar_w = max(slot - gap, 0.3)
    label_every = 1 if n <= 40 else math.ceil(n / 20)
    show_values = n <= 30 and slot >= 18

    parts.append('<g class="marks">')
    for i, mark in enumerate(marks):
        status = mark.status if mark.status in STATUS_COLOURS else "none"
        x = offset + i * slot + gap / 2
        y = y_of(mark.size)
        label = mark.label or f"Cluster {mark.number}: {mark.size} members, {status}"
        rect = (
            f'<rect class="cluster-mark status-{status}" data-cluster="{mark.number}" '
            f'data-size="{mark.size}" x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(bar_w)}" '
            f'height="{_fmt(top + plot_h - y)}" rx="{_fmt(min(3.0, bar_w / 4))}" '
            f'fill="{STATUS_COLOURS[status]}"><title>{escape(label)}</title></rect>'
        )
        if mark.href:
            rect = f'<a href="{escape(mark.href)}">{rect}</a>'
        parts.append(rect)
        if show_values:
            parts.append(
                f'<text x="{_fmt(x + bar_w / 2)}" y="{_fmt(y - 4)}" text-anchor="middle" '
                f'font-size="10" fill="#24292f">{mark.size}</text>'
            )
    parts.append("</g>")

    # x axis: cluster numbers
    parts.append('<g class="axis x-axis" font-size="11" fill="#57606a">')
    for i, mark in enumerate(marks):
        if i % label_every == 0:
            x = offset + i * slot + slot / 2
            parts.append(
                f'<text x="{_fmt(x)}" y="{_fmt(top + plot_h + 15)}" '
                f'text-anchor="middle">{mark.number}</text>'
            )
    parts.append(
        f'<text x="{_fmt(left + plot_w / 2)}" y="{height - 6}" text-anchor="middle">'
        f"cluster number</text></g>"
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text above is escaped
