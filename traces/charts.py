"""Charts drawn on the server as inline SVG: geometry here, markup in the template.

The template escapes every label; nothing here builds markup from strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

WIDTH, HEIGHT = 720, 190
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 24
PALETTE = ["#2f5bd3", "#e8590c", "#12b886", "#ae3ec9", "#f03e3e", "#fab005", "#495057"]
SERIES_COLOURS = {
    "transient": "#f59f00",
    "terminal": "#e03131",
    "validation": "#1c7ed6",
    "policy": "#ae3ec9",
    "budget": "#495057",
}


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Chart:
    title: str
    width: int = WIDTH
    height: int = HEIGHT
    rects: list[Rect] = field(default_factory=list)
    x_labels: list[Label] = field(default_factory=list)
    y_labels: list[Label] = field(default_factory=list)
    grid: list[float] = field(default_factory=list)  # y of horizontal lines
    legend: list[tuple[str, str]] = field(default_factory=list)  # (name, colour)
    empty: bool = False


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × a power of ten that is at least value."""
    if value <= 0:
        return 1
    base = 10 ** math.floor(math.log10(value))
    return next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= value)


def stacked_bars(
    title: str, days: list[date], series: dict[str, list[float]], *, unit: str = ""
) -> Chart:
    """One bar per day, stacked by series; y from 0 to a round maximum."""
    chart = Chart(title=title)
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    if not days or not any(totals):
        chart.empty = True
        return chart
    top = _nice_max(max(totals))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(days)
    bar = max(slot * 0.8, 1)
    colours = {
        name: SERIES_COLOURS.get(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)
    }
    chart.legend = list(colours.items())
    for i, day in enumerate(days):
        y = TOP + plot_h
        for name, values in series.items():
            value = values[i]
            if not value:
                continue
            h = value / top * plot_h
            y -= h
            shown = f"{unit}{value:,.2f}" if unit else f"{value:,.0f}"
            chart.rects.append(
                Rect(
                    x=round(LEFT + i * slot + (slot - bar) / 2, 2),
                    y=round(y, 2),
                    width=round(bar, 2),
                    height=round(h, 2),
                    colour=colours[name],
                    title=f"{day:%b %-d}: {name} {shown}",
                )
            )
    for fraction in (0, 0.5, 1):
        y = round(TOP + plot_h - fraction * plot_h, 2)
        chart.grid.append(y)
        value = top * fraction
        text = f"{unit}{value:,.2f}" if unit and top < 10 else f"{unit}{value:,.0f}"
        chart.y_labels.append(Label(x=LEFT - 6, y=y + 4, text=text, anchor="end"))
    picks = sorted({0, len(days) // 2, len(days) - 1})
    for i in picks:
        anchor = "start" if i == 0 else "end" if i == len(days) - 1 else "middle"
        x = LEFT + i * slot + (0 if anchor == "start" else slot if anchor == "end" else slot / 2)
        chart.x_labels.append(
            Label(x=round(x, 2), y=HEIGHT - 6, text=f"{days[i]:%b %-d}", anchor=anchor)
        )
    return chart
