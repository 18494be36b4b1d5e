"""The dataset's codebook: each CSV column's meaning, scale and missing-value code, the file's
format, the small-numbers rule and the analysis choices. One source for the codebook file
(/utvardering/kodbok.txt), the PDF's appendix and the CSV's header row.

The CSV itself holds one header row and data rows only, so that Excel, LibreOffice, R
(`read.csv`, `readr::read_csv`) and pandas read it without options; what it covers (period,
filters, k) is stated here instead. It is written in UTF-8 with a byte order mark: Excel on
Windows reads a CSV without one in the local 8-bit code page and garbles å, ä and ö, while
LibreOffice, pandas, readr and Python's csv module (encoding "utf-8-sig") take the mark as what it
is. Base R's `read.csv` needs `fileEncoding = "UTF-8-BOM"` to drop it, as the codebook says."""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from slussen.cases.models import CHANNELS
from slussen.cases.workflow import Workflow
from slussen.evaluation import labels
from slussen.evaluation.dataset import AGE_BANDS, OPEN, SEXES
from slussen.evaluation.definitions import ScoreDefinition

#: The dataset's encoding (see the module's docstring for why the byte order mark).
CSV_ENCODING = "utf-8-sig"


@dataclass(frozen=True)
class Column:
    name: str
    meaning: str
    #: The values the column takes: a type, a range or a list of codes with their meaning.
    scale: str
    #: What an empty field (or a code such as "unknown") means.
    missing: str


def _codes(pairs: list[tuple[str, str]]) -> str:
    return "; ".join(f"{code} = {meaning}" for code, meaning in pairs)


def base_columns(workflow: Workflow) -> list[Column]:
    """The dataset's fixed columns, in the CSV's order."""
    month = str(_l("month as YYYY-MM (Swedish time)"))
    not_reached = str(_l("empty: the case has not reached this step"))
    flag = str(_l("1 = yes, 0 = no"))
    never_empty = str(_l("never empty"))
    statuses = [(OPEN, labels.status_label(workflow, OPEN))] + [
        (state, labels.status_label(workflow, state)) for state in workflow.terminal_states
    ]

    def milestone(name: str, step: str) -> Column:
        meaning = str(_("Month of the step: %(step)s.", step=labels.step_label(step)))
        return Column(name, meaning, month, not_reached)

    return [
        Column(
            "pseudonym",
            str(_l("Stable keyed pseudonym of the case; it cannot be turned back into a person.")),
            str(_l("text: P- and 16 hexadecimal digits")),
            never_empty,
        ),
        Column(
            "unit_hsa_id",
            str(_l("HSA-id of the health centre that holds the case.")),
            str(_l("text, e.g. SE2321000016-ABCD")),
            never_empty,
        ),
        Column("unit_name", str(_l("Name of that health centre.")), str(_l("text")), never_empty),
        Column(
            "channel",
            str(_l("How the referral came in.")),
            _codes([(c, labels.channel_label(c)) for c in CHANNELS]),
            never_empty,
        ),
        Column(
            "age_band",
            str(_l("Age at referral (referral year minus birth year).")),
            _codes([(b, labels.age_band_label(b)) for b in AGE_BANDS if b != "unknown"]),
            str(_l("unknown = the age could not be worked out")),
        ),
        Column(
            "sex",
            str(_l("Sex, from the personal identity number.")),
            _codes([(s, labels.sex_label(s)) for s in SEXES if s != "unknown"]),
            str(_l("unknown = not known (e.g. a reserve number)")),
        ),
        Column(
            "status",
            str(_l("Whether the case is open, or how it was closed.")),
            _codes(statuses),
            never_empty,
        ),
        milestone("referred_month", "referral"),
        milestone("invited_month", "invitation"),
        milestone("baseline_month", "baseline"),
        Column(
            "screen_positive",
            str(_l("Whether the screening was positive (flagged or a positive screening score).")),
            flag,
            never_empty,
        ),
        milestone("mapping_visit_month", "mapping_visit"),
        milestone("action_plan_month", "action_plan"),
        milestone("handover_done_month", "handover_done"),
        milestone("follow_up_1_month", "follow_up_1"),
        milestone("six_month_month", "six_month"),
        Column(
            "complete_pair",
            str(_l("Whether at least one score has both a baseline and a six-month value.")),
            flag,
            never_empty,
        ),
    ]


def score_columns(definitions: list[ScoreDefinition]) -> list[Column]:
    """Two columns per instrument score, baseline then six months, in the definitions' order."""
    columns = []
    for d in definitions:
        if d.low is not None and d.high is not None:
            scale = str(
                _(
                    "number from %(low)s to %(high)s, %(direction)s; decimal point",
                    low=f"{d.low:g}",
                    high=f"{d.high:g}",
                    direction=labels.direction_label(d),
                )
            )
        else:
            scale = str(
                _("number, %(direction)s; decimal point", direction=labels.direction_label(d))
            )
        for occasion, when in (("baseline", _l("at baseline")), ("six_month", _l("at six months"))):
            columns.append(
                Column(
                    f"{d.key}_{occasion}",
                    f"{labels.score_label(d)}, {when}.",
                    scale,
                    str(_l("empty: not answered, or too few items answered to score")),
                )
            )
    return columns


def columns(workflow: Workflow, definitions: list[ScoreDefinition]) -> list[Column]:
    """Every column of the dataset, in the CSV's order."""
    return base_columns(workflow) + score_columns(definitions)


def file_notes() -> list[str]:
    """How the CSV is written and how to open it."""
    return [
        str(_l("One header row with the column names, then one row per case; no other lines.")),
        str(
            _l(
                "Comma-separated, UTF-8 with a byte order mark (BOM), decimal point, no thousands "
                "separator."
            )
        ),
        str(
            _l(
                "Excel: Data › From Text/CSV (with Swedish settings a double click puts every row "
                "in one column). LibreOffice: open the file and choose comma as the separator."
            )
        ),
        str(
            _l(
                'R: read.csv(file, fileEncoding = "UTF-8-BOM") or readr::read_csv(file). Python: '
                "pandas.read_csv(file)."
            )
        ),
    ]


def suppression_rule(k: int) -> list[str]:
    """The small-numbers rule, as the codebook and the PDF's appendix state it."""
    return [
        str(
            _(
                "The dataset is microdata, one row per case, and is not suppressed: keep it under "
                "the same terms as the evaluation page."
            )
        ),
        str(
            _(
                "What is published from it follows the report's rule: a count of 1 to %(k1)s "
                "persons is shown as “<%(k)s”, a count that would let a hidden one be worked out "
                "is shown as “..”, and no statistic is computed on fewer than %(k)s persons.",
                k=k,
                k1=k - 1,
            )
        ),
    ]


def codebook_text(
    workflow: Workflow, definitions: list[ScoreDefinition], header: list[str], k: int
) -> str:
    """The codebook as a plain-text file: what the download covers (`header`), the file's
    format, each column, the small-numbers rule and the analysis choices."""
    lines = [str(_("Codebook for the evaluation dataset (CSV)")), ""]
    lines += header
    lines += ["", str(_("The file")), *(f"- {note}" for note in file_notes())]
    lines += ["", str(_("Columns"))]
    for column in columns(workflow, definitions):
        lines += [
            "",
            column.name,
            f"  {_('Meaning')}: {column.meaning}",
            f"  {_('Values')}: {column.scale}",
            f"  {_('Missing')}: {column.missing}",
        ]
    lines += ["", str(_("Small numbers")), *(f"- {rule}" for rule in suppression_rule(k))]
    lines += ["", str(_("Analysis choices")), *(f"- {c}" for c in labels.analysis_choices(k))]
    return "\n".join(lines) + "\n"
