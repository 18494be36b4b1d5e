"""The evaluation report as a PDF for a commissioner: the same tables and charts as the page, the
charts drawn with ReportLab graphics from the same scenes (slussen.evaluation.charts)."""

from __future__ import annotations

import io
from typing import Any

from flask_babel import gettext as _
from reportlab.graphics.shapes import Circle as RlCircle
from reportlab.graphics.shapes import Drawing, Group, String
from reportlab.graphics.shapes import Line as RlLine
from reportlab.graphics.shapes import Rect as RlRect
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    KeepTogether,
    LongTable,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

from slussen.cases.workflow import Workflow
from slussen.evaluation import charts, codebook, labels
from slussen.evaluation.dataset import DIMENSIONS
from slussen.evaluation.report import CLASSES, Outcome, Report
from slussen.pdf import a4_document, register_fonts

#: A table cell's left and right padding (points).
CELL_PADDING = 4

#: The printable width of the page (A4 with 18 mm margins).
FRAME_WIDTH = A4[0] - 36 * mm


def to_drawing(scene: charts.Scene, font: str, bold: str) -> Drawing:
    """The scene as ReportLab graphics, scaled to fit the page width (y flipped upwards)."""
    scale = min(1.0, FRAME_WIDTH / scene.width)
    drawing = Drawing(scene.width * scale, scene.height * scale)
    group = Group()
    h = scene.height
    for shape in scene.shapes:
        if isinstance(shape, charts.Rect):
            group.add(
                RlRect(
                    shape.x,
                    h - shape.y - shape.h,
                    shape.w,
                    shape.h,
                    fillColor=colors.HexColor(shape.fill),
                    strokeColor=colors.HexColor(shape.stroke) if shape.stroke else None,
                    strokeWidth=0.8 if shape.stroke else 0,
                )
            )
        elif isinstance(shape, charts.Line):
            group.add(
                RlLine(
                    shape.x1,
                    h - shape.y1,
                    shape.x2,
                    h - shape.y2,
                    strokeColor=colors.HexColor(shape.stroke),
                    strokeWidth=shape.width,
                    strokeDashArray=[4, 3] if shape.dashed else None,
                )
            )
        elif isinstance(shape, charts.Circle):
            group.add(
                RlCircle(
                    shape.cx,
                    h - shape.cy,
                    shape.r,
                    fillColor=colors.HexColor(shape.fill),
                    strokeColor=None,
                )
            )
        else:
            group.add(
                String(
                    shape.x,
                    h - shape.y,
                    shape.text,
                    fontName=bold if shape.bold else font,
                    fontSize=shape.size,
                    fillColor=colors.HexColor(shape.fill),
                    textAnchor=shape.anchor,
                )
            )
    group.scale(scale, scale)
    drawing.add(group)
    return drawing


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Styles:
    def __init__(self) -> None:
        self.regular, self.bold = register_fonts()
        self.body = ParagraphStyle("body", fontName=self.regular, fontSize=9.5, leading=13)
        self.small = ParagraphStyle("small", parent=self.body, fontSize=8.5, leading=11)
        self.h1 = ParagraphStyle(
            "h1", parent=self.body, fontName=self.bold, fontSize=17, leading=21
        )
        self.h2 = ParagraphStyle(
            "h2",
            parent=self.body,
            fontName=self.bold,
            fontSize=13,
            leading=17,
            spaceBefore=8,
            spaceAfter=4,
        )
        self.h3 = ParagraphStyle(
            "h3",
            parent=self.body,
            fontName=self.bold,
            fontSize=11,
            leading=14,
            spaceBefore=6,
            spaceAfter=3,
        )

    def p(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        return Paragraph(_escape(text), style or self.body)

    def table(
        self, rows: list[list[str]], widths: list[float], *, header: bool = True
    ) -> LongTable:
        head_style, widths = self._fit(rows, widths) if header else (self.small, widths)
        data = [
            [
                Paragraph(
                    f"<b>{_escape(cell)}</b>" if (header and r == 0) or c == 0 else _escape(cell),
                    head_style if header and r == 0 else self.small,
                )
                for c, cell in enumerate(row)
            ]
            for r, row in enumerate(rows)
        ]
        table = LongTable(data, colWidths=widths, repeatRows=1 if header else 0)
        style: list[Any] = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.grey),
            ("TOPPADDING", (0, 0), (-1, -1), 2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
            ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ]
        if header:
            style.append(("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black))
        table.setStyle(TableStyle(style))
        return table

    def _fit(
        self, rows: list[list[str]], widths: list[float]
    ) -> tuple[ParagraphStyle, list[float]]:
        """The header's style and the column widths at which every header wraps at spaces only
        (no word is split): a column too narrow for its longest word takes room from columns
        with room to spare, and the header's type shrinks (down to 6 pt) until the words fit.
        Falls back to the widths given, words split, if even that does not fit."""

        def longest(texts: list[str], font: str, size: float) -> float:
            words = [w for text in texts for w in text.split()]
            return max((stringWidth(w, font, size) for w in words), default=0) + 2 * CELL_PADDING

        body = [
            longest(
                [row[c] for row in rows[1:] if c < len(row)],
                self.bold if c == 0 else self.regular,
                8.5,
            )
            for c in range(len(widths))
        ]
        for size in (8.5, 8.0, 7.5, 7.0, 6.5, 6.0):
            need = [
                max(longest([h], self.bold, size), b) for h, b in zip(rows[0], body, strict=False)
            ]
            short = sum(max(n - w, 0) for n, w in zip(need, widths, strict=True))
            spare = [max(w - n, 0) for n, w in zip(need, widths, strict=True)]
            if short <= sum(spare):
                share = short / sum(spare) if short else 0
                fitted = [
                    max(w, n) - s * share for w, n, s in zip(widths, need, spare, strict=True)
                ]
                style = ParagraphStyle(
                    f"head{size}", parent=self.small, fontSize=size, leading=size + 2.5,
                    splitLongWords=0,
                )  # fmt: skip
                return style, fitted
        return self.small, widths


def _footer(canvas: Canvas, doc: SimpleDocTemplate) -> None:
    canvas.saveState()
    canvas.setFont(register_fonts()[0], 8)
    canvas.drawString(18 * mm, 10 * mm, _("Slussen evaluation, pseudonymised"))
    canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, _("Page %(page)s", page=doc.page))
    canvas.restoreState()


def _flow(report: Report, workflow: Workflow, s: _Styles) -> list[Flowable]:
    k = report.k
    story: list[Flowable] = [s.p(_("The flow"), s.h2)]
    story.append(to_drawing(charts.funnel(report), s.regular, s.bold))
    rows = [
        [
            _("Step"),
            _("Cases"),
            _("Share of referred"),
            _("Stopped here"),
            _("Days to the next step, median (IQR)"),
        ]
    ]
    for row in report.steps:
        days = ""
        if row.days_to_next:
            q = row.days_to_next
            days = (
                f"{labels.number(q.median, 0)} ({labels.number(q.q1, 0)}–{labels.number(q.q3, 0)})"
            )
        rows.append(
            [
                ("   " if row.parent else "") + labels.step_label(row.key),
                row.count.text(k),
                labels.percent(row.count, report.referred),
                labels.count_text(row.dropped, k),
                days,
            ]
        )
    story.append(s.table(rows, [62 * mm, 20 * mm, 26 * mm, 24 * mm, 42 * mm]))
    story.append(s.p(_("Reasons for closure"), s.h3))
    closures = [[_("Status"), _("Cases"), _("Share of referred")]]
    closures += [
        [labels.status_label(workflow, status), c.text(k), labels.percent(c, report.referred)]
        for status, c in report.closures
    ]
    story.append(s.table(closures, [80 * mm, 25 * mm, 35 * mm]))
    for breakdown in report.breakdowns:
        head = [labels.dimension_label(breakdown.dimension)]
        head += [labels.step_label(r.key) for r in report.steps if r.parent is None]
        body = [
            [labels.group_label(report, breakdown.dimension, group)] + [c.text(k) for c in counts]
            for group, counts in breakdown.rows
        ]
        width = (FRAME_WIDTH - 34 * mm) / (len(head) - 1)
        story.append(CondPageBreak(40 * mm))
        story.append(
            s.p(
                _(
                    "The flow by %(dimension)s",
                    dimension=labels.dimension_label(breakdown.dimension).lower(),
                ),
                s.h3,
            )
        )
        story.append(s.table([head, *body], [34 * mm] + [width] * (len(head) - 1)))
    return story


def _outcome(outcome: Outcome, k: int, report: Report, s: _Styles) -> list[Flowable]:
    d = outcome.definition
    p = outcome.paired
    rows = [[_("Complete pairs (n)"), outcome.n_pairs.text(k)]]
    if p is not None:
        wilcoxon = "–"
        if p.wilcoxon:
            method = {
                "exact": _("exact"),
                "permutation": _("exact permutation"),
            }.get(p.wilcoxon.method, _("normal approximation"))
            wilcoxon = f"p = {labels.p_value(p.wilcoxon.p)} ({method})"
        rows += [
            [
                _("Baseline, mean (SD)"),
                f"{labels.number(p.mean_baseline)} ({labels.number(p.sd_baseline)})",
            ],
            [
                _("Six months, mean (SD)"),
                f"{labels.number(p.mean_six_month)} ({labels.number(p.sd_six_month)})",
            ],
            [
                _("Mean change (%(level)s CI)", level="95 %"),
                f"{labels.signed(p.mean_diff)} ({labels.signed(p.ci_low)} {_('to')} "
                f"{labels.signed(p.ci_high)})",
            ],
            [
                _("Paired t-test"),
                f"t({p.df}) = {labels.number(p.t)}, p = {labels.p_value(p.p_t)}"
                if p.t is not None
                else "–",
            ],
            [_("Wilcoxon signed-rank test"), wilcoxon],
            [_("Effect size d_z"), labels.signed(p.d_z)],
        ]
    else:
        rows.append(
            [
                _("Statistics"),
                _(
                    "No statistics: fewer than %(k)s complete pairs, or their number is hidden.",
                    k=k,
                ),
            ]
        )
    names = {"improved": _("Improved"), "unchanged": _("Unchanged"), "worse": _("Worse")}
    for name in CLASSES:
        c = outcome.classes[name]
        rows.append([names[name], f"{c.text(k)} ({labels.percent(c, outcome.n_pairs)})"])
    if outcome.reliable:
        r = outcome.reliable
        rows.append(
            [
                _("Reliably improved (RCI)"),
                f"{r['improved'].text(k)} ({labels.percent(r['improved'], outcome.n_pairs)}); "
                f"{_('reliably worse')} {r['worse'].text(k)}; "
                + _(
                    "smallest reliable change %(value)s points",
                    value=labels.number(outcome.min_reliable_change),
                ),
            ]
        )
    sensitivity = f"n = {outcome.n_bocf.text(k)}"
    if outcome.bocf:
        b = outcome.bocf
        sensitivity += (
            f"; {_('mean change')} {labels.signed(b.mean_diff)} ({labels.signed(b.ci_low)} "
            f"{_('to')} {labels.signed(b.ci_high)}), p = {labels.p_value(b.p_t)}"
        )
        if b.wilcoxon:
            sensitivity += f", Wilcoxon p = {labels.p_value(b.wilcoxon.p)}"
        sensitivity += f"; {_('improved')} {labels.percent(outcome.bocf_improved, outcome.n_bocf)}"
    rows.append([_("Sensitivity: non-responders unchanged"), sensitivity])
    title = f"{labels.score_label(d)} ({labels.direction_label(d)})"
    story: list[Flowable] = [
        CondPageBreak(60 * mm),
        s.p(title, s.h3),
        s.table(rows, [62 * mm, FRAME_WIDTH - 62 * mm], header=False),
        Spacer(1, 3 * mm),
    ]
    pair_chart, change_chart = charts.paired(outcome, k), charts.change(outcome, k)
    if pair_chart is not None:
        story.append(KeepTogether([to_drawing(pair_chart, s.regular, s.bold)]))
    if change_chart is not None:
        story.append(KeepTogether([to_drawing(change_chart, s.regular, s.bold)]))
        bins = [[_("Change"), _("Persons")]] + [
            [charts.bin_label(b.low, b.high), b.count.text(k)] for b in outcome.bins
        ]
        story.append(s.table(bins, [40 * mm, 30 * mm]))
    for dimension in DIMENSIONS:
        head = [
            labels.dimension_label(dimension),
            "n",
            _("Mean change (%(level)s CI)", level="95 %"),
            "d_z",
            _("Improved"),
        ]
        body = []
        for g in outcome.by_group[dimension]:
            change = "–"
            dz = "–"
            if g.paired:
                change = (
                    f"{labels.signed(g.paired.mean_diff)} ({labels.signed(g.paired.ci_low)} "
                    f"{_('to')} {labels.signed(g.paired.ci_high)})"
                )
                dz = labels.signed(g.paired.d_z)
            body.append(
                [
                    labels.group_label(report, dimension, g.group),
                    g.n.text(k),
                    change,
                    dz,
                    f"{g.improved.text(k)} ({labels.percent(g.improved, g.n)})",
                ]
            )
        story.append(
            s.p(
                _(
                    "%(score)s by %(dimension)s",
                    score=labels.score_label(d),
                    dimension=labels.dimension_label(dimension).lower(),
                ),
                s.small,
            )
        )
        story.append(s.table([head, *body], [50 * mm, 16 * mm, 52 * mm, 18 * mm, 38 * mm]))
        story.append(Spacer(1, 2 * mm))
    return story


def _codebook(report: Report, workflow: Workflow, k: int, s: _Styles) -> list[Flowable]:
    """The appendix: the dataset's codebook, as the codebook file has it (slussen/evaluation/
    codebook.py), so that a printed report explains the CSV that goes with it."""
    story: list[Flowable] = [PageBreak(), s.p(_("Appendix: codebook of the dataset (CSV)"), s.h2)]
    story += [s.p("• " + note, s.small) for note in codebook.file_notes()]
    rows = [[_("Column"), _("Meaning and values"), _("Missing")]]
    for column in codebook.columns(workflow, [o.definition for o in report.outcomes]):
        rows.append([column.name, f"{column.meaning} {column.scale}", column.missing])
    story.append(s.table(rows, [58 * mm, FRAME_WIDTH - 58 * mm - 42 * mm, 42 * mm]))
    story.append(s.p(_("Small numbers"), s.h3))
    story += [s.p("• " + rule, s.small) for rule in codebook.suppression_rule(k)]
    return story


def render_report(report: Report, workflow: Workflow) -> bytes:
    """The report as PDF bytes: what it shows (period, filters, k), the flow, each instrument's
    outcome with its charts, and the analysis choices."""
    s = _Styles()
    k = report.k
    story: list[Flowable] = [
        s.p(_("Evaluation of the sluss"), s.h1),
        Spacer(1, 3 * mm),
        s.p(
            _(
                "Pseudonymised report from Slussen. Made %(when)s.",
                when=report.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
            )
        ),
        Spacer(1, 3 * mm),
    ]
    facts = [
        [what, chosen] for what, chosen in labels.filter_lines(report.filters, k, report.unit_names)
    ]
    story.append(s.table(facts, [60 * mm, 80 * mm], header=False))
    story.append(Spacer(1, 2 * mm))
    story.append(
        s.p(
            _(
                "“<%(k)s” means 1 to %(k1)s persons; “..” is hidden so that a small number "
                "cannot be worked out from the totals; “–” means not computed.",
                k=k,
                k1=k - 1,
            ),
            s.small,
        )
    )
    story += _flow(report, workflow, s)
    story.append(s.p(_("Baseline and six months"), s.h2))
    if not report.outcomes:
        story.append(s.p(_("No scored instrument is defined.")))
    for outcome in report.outcomes:
        story += _outcome(outcome, k, report, s)
    story.append(CondPageBreak(50 * mm))
    story.append(s.p(_("Analysis choices"), s.h2))
    for line in labels.analysis_choices(k):
        story.append(s.p("• " + line, s.small))
    story += _codebook(report, workflow, k, s)
    buffer = io.BytesIO()
    doc = a4_document(buffer, title=_("Evaluation of the sluss"), side_mm=18)
    doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return buffer.getvalue()
