"""Words and number formats shared by the evaluator's page, the PDF report and the CSV header.
English msgids, Swedish translations; numbers in the user's locale (decimal comma in Swedish)."""

from __future__ import annotations

from collections.abc import Hashable

from flask_babel import format_decimal
from flask_babel import gettext as _

from slussen.cases.workflow import Workflow
from slussen.evaluation.dataset import OPEN, Filters
from slussen.evaluation.definitions import ScoreDefinition
from slussen.evaluation.report import Count, Report, share
from slussen.i18n import localised, ui_language


def step_label(key: str) -> str:
    labels = {
        "referral": _("Referred"),
        "invitation": _("Invited"),
        "baseline": _("Baseline answers returned"),
        "screen_positive": _("of whom screen-positive"),
        "mapping_visit": _("Mapping visit held"),
        "action_plan": _("Action plan written"),
        "handover_done": _("of whom a hand-over done"),
        "follow_up_1": _("Follow-up 1"),
        "six_month": _("Six-month answers returned"),
        "complete_pair": _("Complete pairs (baseline and six months)"),
    }
    return str(labels.get(key, key))


def dimension_label(dimension: str) -> str:
    labels = {
        "unit": _("Unit"),
        "channel": _("Referral channel"),
        "age_band": _("Age band"),
        "sex": _("Sex"),
    }
    return str(labels.get(dimension, dimension))


def channel_label(channel: str) -> str:
    labels = {
        "staff_flag": _("Flagged by staff"),
        "self_referral": _("Self-referral"),
        "phone": _("Phone call"),
        "message_1177": _("1177 message"),
    }
    return str(labels.get(channel, channel))


def sex_label(sex: str) -> str:
    labels = {"female": _("Women"), "male": _("Men"), "unknown": _("Sex unknown")}
    return str(labels.get(sex, sex))


def age_band_label(band: str) -> str:
    if band == "unknown":
        return str(_("Age unknown"))
    return str(_("%(band)s years", band=band.replace("-", "–")))


def group_label(report: Report, dimension: str, group: Hashable) -> str:
    if dimension == "unit":
        return report.unit_names.get(int(str(group)), str(_("Unknown unit")))
    if dimension == "channel":
        return channel_label(str(group))
    if dimension == "age_band":
        return age_band_label(str(group))
    return sex_label(str(group))


def status_label(workflow: Workflow, status: str) -> str:
    if status == OPEN:
        return str(_("Still open"))
    state = workflow.states.get(status)
    return localised(state.label) if state else status


def score_label(definition: ScoreDefinition) -> str:
    language = ui_language()
    return definition.label.get(language) or definition.label.get("sv") or definition.key


def direction_label(definition: ScoreDefinition) -> str:
    if definition.is_lower_better:
        return str(_("lower is better"))
    return str(_("higher is better"))


def number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    pattern = "0." + "0" * digits if digits else "0"
    return str(format_decimal(value, format=pattern))


def signed(value: float | None, digits: int = 2) -> str:
    """A number with its sign, also "+" (a change)."""
    if value is None:
        return "–"
    text = number(value, digits)
    return text if value < 0 or text.lstrip("0,.") == "" else "+" + text


def p_value(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 0.001:
        return "<" + number(0.001, 3)
    return number(value, 3)


def percent(part: Count, whole: Count) -> str:
    fraction = share(part, whole)
    if fraction is None:
        return "–"
    return number(100 * fraction, 0) + " %"


def count_text(count: Count | None, k: int) -> str:
    return "" if count is None else count.text(k)


def filter_lines(f: Filters, k: int, unit_names: dict[int, str]) -> list[tuple[str, str]]:
    """(what, chosen) for every filter, "all" where none was chosen, and k."""
    every = str(_("all"))
    period = "–".join(
        [
            f.date_from.isoformat() if f.date_from else str(_("the beginning")),
            f.date_to.isoformat() if f.date_to else str(_("today")),
        ]
    )
    return [
        (str(_("Period (day of referral)")), period),
        (dimension_label("unit"), unit_names.get(f.unit_id, every) if f.unit_id else every),
        (dimension_label("channel"), channel_label(f.channel) if f.channel else every),
        (dimension_label("age_band"), age_band_label(f.age_band) if f.age_band else every),
        (dimension_label("sex"), sex_label(f.sex) if f.sex else every),
        (str(_("Suppression threshold k")), str(k)),
    ]


def analysis_choices(k: int) -> list[str]:
    """The analysis choices, stated on every output (domain facts §2)."""
    return [
        str(
            _(
                "Population: the cases referred in the period (the day the case was opened) that "
                "match the filters. Evaluators see pseudonymised data only."
            )
        ),
        str(
            _(
                "Flow: a case has passed a step when it reached that step or a later one (follow-"
                "up 1 may be skipped). Drop-off is the number who passed a step but not the next."
                " Screen-positive and hand-over are counted among those who passed the step above"
                " them."
            )
        ),
        str(
            _(
                "Days between steps: median and interquartile range (numpy's linear "
                "interpolation) of calendar days in Swedish time, for cases with both milestones."
            )
        ),
        str(
            _(
                "Outcomes: complete pairs only (the same score at baseline and at six months); "
                "the change is the six-month value minus the baseline value."
            )
        ),
        str(
            _(
                "Mean difference with a 95 % confidence interval from the t distribution (df = n "
                "− 1) and the two-sided paired t-test (scipy.stats.ttest_rel)."
            )
        ),
        str(
            _(
                "Wilcoxon signed-rank test (scipy.stats.wilcoxon), two-sided, zero differences "
                "dropped (zero_method “wilcox”): exact with at most 50 non-zero differences and "
                "no ties; with ties an exact permutation test up to 13, otherwise the normal "
                "approximation."
            )
        ),
        str(
            _(
                "Effect size d_z = mean difference / standard deviation of the differences "
                "(Cohen's d for paired data; not comparable with a between-group d)."
            )
        ),
        str(
            _(
                "Improved, unchanged and worse follow each instrument's own direction (lower is "
                "better, or higher is better) from its form definition."
            )
        ),
        str(
            _(
                "Reliable change (Jacobson & Truax 1991) where the form defines reliability: RCI "
                "= change / (SD × √2 × √(1 − r_xx)), reliable when |RCI| > 1.96."
            )
        ),
        str(
            _(
                "Sensitivity analysis: cases with a baseline value that were closed without a "
                "six-month value are counted as unchanged (baseline observation carried forward);"
                " open cases still waiting are left out. It is not the primary analysis."
            )
        ),
        str(
            _(
                "Small numbers: a count of 1 to %(k1)s persons is shown as “<%(k)s”; a count "
                "hidden so that a small number cannot be worked out from the totals is shown as "
                "“..”; no statistic is computed on fewer than %(k)s persons.",
                k=k,
                k1=k - 1,
            )
        ),
    ]


def header_lines(f: Filters, k: int, unit_names: dict[int, str], generated: str) -> list[str]:
    """What every output states first: what it is, when it was made, filters, k, choices."""
    lines = [str(_("Slussen evaluation, pseudonymised. Made %(when)s.", when=generated))]
    lines += [f"{what}: {chosen}" for what, chosen in filter_lines(f, k, unit_names)]
    lines += analysis_choices(k)
    return lines
