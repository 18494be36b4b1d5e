"""The evaluation's charts, drawn once as a small scene of shapes and rendered twice: as inline SVG
for the web page (no script, no style attribute: CSP) and as ReportLab graphics for the PDF, so
both show the same picture.

Charts draw only what the tables beside them publish: a hidden count gets no bar, only its
"<k" or ".." mark; a chart of statistics is drawn only where the statistics are shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flask_babel import gettext as _
from markupsafe import Markup, escape
from scipy import stats as sps

from slussen.evaluation import labels
from slussen.evaluation.dataset import STEPS
from slussen.evaluation.report import Outcome, Report, StepRow

INK = "#1b1b1b"
MUTED = "#4a4a4a"
GRID = "#c9c6bd"
BAR = "#0b5d56"
BOX = "#cfe3e0"
SIDE_COLOURS = {"improved": "#1d6b2f", "unchanged": "#6b6b6b", "worse": "#a4161a"}


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str | None = None


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str = INK
    width: float = 1.0
    dashed: bool = False


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    size: float = 11.0
    anchor: str = "start"
    bold: bool = False
    fill: str = INK


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str


Shape = Rect | Line | Text | Circle


@dataclass
class Scene:
    """A chart: its size in points (y grows downwards), a title and a text description."""

    width: float
    height: float
    title: str
    description: str
    shapes: list[Shape] = field(default_factory=list)

    def add(self, *shapes: Shape) -> None:
        self.shapes.extend(shapes)


# --- the charts --------------------------------------------------------------------------------


def funnel(report: Report) -> Scene:
    """Horizontal bars: how many passed each main step of the flow."""
    rows: list[StepRow] = [row for row in report.steps if row.parent is None]
    label_width, bar_width, row_height = 300.0, 280.0, 26.0
    height = 20 + row_height * len(rows)
    scene = Scene(
        label_width + bar_width + 70,
        height,
        _("The flow: cases that passed each step"),
        _(
            "Bar chart of how many cases passed each step, from referral to complete pairs: "
            "%(steps)s.",
            steps="; ".join(f"{labels.step_label(r.key)} {r.count.text(report.k)}" for r in rows),
        ),
    )
    top = max((r.count.value for r in rows if not r.count.is_hidden), default=0) or 1
    for index, row in enumerate(rows):
        y = 10 + index * row_height
        scene.add(Text(label_width - 8, y + 17, labels.step_label(row.key), anchor="end"))
        if row.count.is_hidden:
            scene.add(Text(label_width + 4, y + 17, row.count.text(report.k), fill=MUTED))
            continue
        length = bar_width * row.count.value / top
        scene.add(Rect(label_width, y + 4, max(length, 0.5), row_height - 8, BAR))
        scene.add(Text(label_width + length + 6, y + 17, row.count.text(report.k)))
    return scene


def _axis_ticks(low: float, high: float) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    step = 10 ** math.floor(math.log10(span / 5 or 1))
    for factor in (1, 2, 2.5, 5, 10):
        if span / (step * factor) <= 6:
            step *= factor
            break
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def paired(outcome: Outcome, k: int) -> Scene | None:
    """Baseline and six months side by side on the score's scale: the middle half of the pairs
    (box, median line) and the mean with its 95 % confidence interval, means joined by a line."""
    p, spread = outcome.paired, outcome.spread
    if p is None or spread is None:
        return None
    d = outcome.definition
    low = d.low if d.low is not None else min(spread[0].q1, spread[1].q1)
    high = d.high if d.high is not None else max(spread[0].q3, spread[1].q3)
    if high <= low:
        high = low + 1
    width, height, left, top, plot_h = 420.0, 272.0, 60.0, 32.0, 200.0
    name = labels.score_label(d)

    def y_of(value: float) -> float:
        return top + plot_h * (high - value) / (high - low)

    t_crit = float(sps.t.ppf(0.975, p.n - 1))
    occasions = [
        (_("Baseline"), p.mean_baseline, p.sd_baseline, spread[0]),
        (_("Six months"), p.mean_six_month, p.sd_six_month, spread[1]),
    ]
    scene = Scene(
        width,
        height,
        _("%(score)s: baseline and six months", score=name),
        _(
            "Complete pairs, n = %(n)s (%(direction)s). Baseline mean %(m1)s (95 %% CI %(l1)s to "
            "%(h1)s), median %(md1)s; six months mean %(m2)s (95 %% CI %(l2)s to %(h2)s), median "
            "%(md2)s.",
            n=p.n,
            direction=labels.direction_label(d),
            m1=labels.number(p.mean_baseline),
            l1=labels.number(p.mean_baseline - t_crit * p.sd_baseline / math.sqrt(p.n)),
            h1=labels.number(p.mean_baseline + t_crit * p.sd_baseline / math.sqrt(p.n)),
            md1=labels.number(spread[0].median),
            m2=labels.number(p.mean_six_month),
            l2=labels.number(p.mean_six_month - t_crit * p.sd_six_month / math.sqrt(p.n)),
            h2=labels.number(p.mean_six_month + t_crit * p.sd_six_month / math.sqrt(p.n)),
            md2=labels.number(spread[1].median),
        ),
    )
    for tick in _axis_ticks(low, high):
        y = y_of(tick)
        scene.add(Line(left, y, width - 20, y, GRID, 0.5))
        scene.add(
            Text(
                left - 6,
                y + 4,
                labels.number(tick, 0 if tick == int(tick) else 1),
                size=10,
                anchor="end",
                fill=MUTED,
            )
        )
    # Each axis is labelled once: the score's scale on the left (its name is in the title), the
    # two occasions under their boxes.
    scene.add(Text(4, 14, _("Score"), size=9, fill=MUTED))
    centres = [left + 90, left + 250]
    means = []
    for centre, (label, mean, sd, quart) in zip(centres, occasions, strict=True):
        half = t_crit * sd / math.sqrt(p.n)
        scene.add(
            Rect(centre - 35, y_of(quart.q3), 70, max(y_of(quart.q1) - y_of(quart.q3), 1), BOX, BAR)
        )
        scene.add(Line(centre - 35, y_of(quart.median), centre + 35, y_of(quart.median), BAR, 2))
        scene.add(Line(centre, y_of(mean - half), centre, y_of(mean + half), INK, 1.5))
        scene.add(Line(centre - 8, y_of(mean - half), centre + 8, y_of(mean - half), INK, 1.5))
        scene.add(Line(centre - 8, y_of(mean + half), centre + 8, y_of(mean + half), INK, 1.5))
        scene.add(Text(centre, top + plot_h + 22, str(label), anchor="middle"))
        means.append((centre, y_of(mean)))
    scene.add(Line(means[0][0], means[0][1], means[1][0], means[1][1], INK, 1.5, dashed=True))
    for cx, cy in means:
        scene.add(Circle(cx, cy, 4.5, INK))
    scene.add(
        Text(
            left,
            height - 6,
            _("Box: middle half, line: median, dot: mean with %(level)s CI", level="95 %"),
            size=9,
            fill=MUTED,
        )
    )
    return scene


def change(outcome: Outcome, k: int) -> Scene | None:
    """Bars: how many pairs changed by how much, coloured by improved / unchanged / worse in the
    instrument's own direction. A hidden count has no bar, only its mark."""
    if outcome.n_pairs.value == 0 or outcome.n_pairs.is_hidden:
        return None
    bins = outcome.bins
    left, top, plot_h = 50.0, 32.0, 170.0
    slot = max(12.0, min(36.0, 460.0 / max(len(bins), 1)))
    width = max(380.0, left + slot * len(bins) + 20)
    height = top + plot_h + 74
    d = outcome.definition
    top_count = max((b.count.value for b in bins if not b.count.is_hidden), default=0) or 1
    scene = Scene(
        width,
        height,
        _("%(score)s: change from baseline to six months", score=labels.score_label(d)),
        _(
            "Bar chart of the change per person (six months minus baseline, %(direction)s): "
            "%(bins)s.",
            direction=labels.direction_label(d),
            bins="; ".join(f"{bin_label(b.low, b.high)}: {b.count.text(k)}" for b in bins),
        ),
    )
    for tick in _axis_ticks(0, top_count):
        y = top + plot_h * (1 - tick / top_count)
        scene.add(Line(left, y, left + slot * len(bins), y, GRID, 0.5))
        scene.add(Text(left - 6, y + 4, labels.number(tick, 0), size=10, anchor="end", fill=MUTED))
    every = max(1, math.ceil(len(bins) / 16))
    for index, b in enumerate(bins):
        x = left + index * slot
        colour = SIDE_COLOURS[b.side]
        if b.count.is_hidden:
            scene.add(
                Text(
                    x + slot / 2,
                    top + plot_h - 4,
                    b.count.text(k),
                    size=9,
                    anchor="middle",
                    fill=colour,
                )
            )
        elif b.count.value:
            h = plot_h * b.count.value / top_count
            scene.add(Rect(x + 2, top + plot_h - h, slot - 4, h, colour))
        if index % every == 0 or b.side == "unchanged":
            scene.add(
                Text(
                    x + slot / 2,
                    top + plot_h + 16,
                    bin_label(b.low, b.high),
                    size=9,
                    anchor="middle",
                )
            )
    scene.add(Line(left, top + plot_h, left + slot * len(bins), top + plot_h, INK, 1))
    # Each axis is labelled once: persons up the side, the change along the bottom.
    scene.add(Text(4, 14, _("Persons"), size=9, fill=MUTED))
    scene.add(
        Text(
            left,
            top + plot_h + 34,
            _("Change per person (six months minus baseline)"),
            size=9,
            fill=MUTED,
        )
    )
    scene.add(
        Text(
            left, height - 8, _("Green: improved, grey: unchanged, red: worse"), size=9, fill=MUTED
        )
    )
    return scene


def bin_label(low: float, high: float) -> str:
    if low == high:
        return labels.signed(low, 0) if low == int(low) else labels.signed(low)
    return f"{labels.signed(low, 1)}…{labels.signed(high, 1)}"


def for_report(report: Report) -> dict[str, object]:
    """Every chart of a report: {"funnel": Scene, "outcomes": {key: (paired, change)}}."""
    return {
        "funnel": funnel(report),
        "outcomes": {
            o.definition.key: (paired(o, report.k), change(o, report.k)) for o in report.outcomes
        },
    }


# --- rendering ---------------------------------------------------------------------------------


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def to_svg(scene: Scene, ident: str) -> Markup:
    """Inline SVG with a title and description for screen readers; presentation attributes only
    (the CSP forbids style attributes)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_f(scene.width)} '
        f'{_f(scene.height)}" width="{_f(scene.width)}" height="{_f(scene.height)}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" class="chart" '
        'font-family="system-ui, Arial, sans-serif">',
        f'<title id="{ident}-title">{escape(scene.title)}</title>',
        f'<desc id="{ident}-desc">{escape(scene.description)}</desc>',
    ]
    for shape in scene.shapes:
        if isinstance(shape, Rect):
            stroke = f' stroke="{shape.stroke}"' if shape.stroke else ""
            parts.append(
                f'<rect x="{_f(shape.x)}" y="{_f(shape.y)}" width="{_f(shape.w)}" '
                f'height="{_f(shape.h)}" fill="{shape.fill}"{stroke}/>'
            )
        elif isinstance(shape, Line):
            dash = ' stroke-dasharray="4 3"' if shape.dashed else ""
            parts.append(
                f'<line x1="{_f(shape.x1)}" y1="{_f(shape.y1)}" x2="{_f(shape.x2)}" '
                f'y2="{_f(shape.y2)}" stroke="{shape.stroke}" stroke-width="{_f(shape.width)}"'
                f"{dash}/>"
            )
        elif isinstance(shape, Circle):
            parts.append(
                f'<circle cx="{_f(shape.cx)}" cy="{_f(shape.cy)}" r="{_f(shape.r)}" '
                f'fill="{shape.fill}"/>'
            )
        else:
            anchor = {"start": "start", "middle": "middle", "end": "end"}[shape.anchor]
            weight = ' font-weight="bold"' if shape.bold else ""
            parts.append(
                f'<text x="{_f(shape.x)}" y="{_f(shape.y)}" font-size="{_f(shape.size)}" '
                f'text-anchor="{anchor}" fill="{shape.fill}"{weight}>{escape(shape.text)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


__all__ = ["STEPS", "Scene", "change", "for_report", "funnel", "paired", "to_svg"]
