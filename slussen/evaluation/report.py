"""From the case stream to a publishable report: counts, intervals and paired statistics, with
small-number suppression applied to every table (docs/evaluation.md).

`Accumulator.add` takes one `CaseBatch` at a time and keeps only counts, day intervals and score
values (arrays of numbers); `Accumulator.finish` builds the tables, suppresses them and computes the
statistics where at least k persons are behind them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slussen.evaluation import stats
from slussen.evaluation.dataset import (
    DIMENSIONS,
    MOMENTS,
    OPEN,
    STEPS,
    SUB_STEPS,
    CaseBatch,
    Filters,
)
from slussen.evaluation.definitions import ScoreDefinition
from slussen.evaluation.suppression import PRIMARY, CellTable, shown, suppress

CLASSES = ("improved", "unchanged", "worse")
_BASELINE = STEPS.index("baseline")
_ACTION_PLAN = STEPS.index("action_plan")
#: At most this many bins on each side of zero in the distribution of change (non-integer scores).
MAX_BINS_PER_SIDE = 12


@dataclass(frozen=True)
class Count:
    """A published count: its value, and whether it is hidden (PRIMARY/SECONDARY) or shown."""

    value: int
    mark: str | None = None

    @property
    def is_hidden(self) -> bool:
        return self.mark is not None

    @property
    def is_primary(self) -> bool:
        return self.mark == PRIMARY

    def text(self, k: int) -> str:
        return shown(self.value, self.mark, k)


def share(part: Count, whole: Count) -> float | None:
    """part / whole, or None when either is hidden or the whole is zero."""
    if part.is_hidden or whole.is_hidden or whole.value == 0:
        return None
    return part.value / whole.value


@dataclass
class StepRow:
    key: str
    count: Count
    #: Cases that passed this step but not the next (None for the last step and "of whom" rows).
    dropped: Count | None
    #: Days from this step's milestone to the next step's, for cases with both (None if < k).
    days_to_next: stats.Quartiles | None
    #: An "of whom" row under `parent`.
    parent: str | None = None


@dataclass
class Breakdown:
    dimension: str
    #: (group, counts per step in STEPS order)
    rows: list[tuple[Hashable, list[Count]]]


@dataclass
class Bin:
    low: float
    high: float
    count: Count
    side: str


@dataclass
class GroupOutcome:
    group: Hashable
    n: Count
    improved: Count
    #: Mean change, CI and d_z; None when fewer than k persons or n is hidden.
    paired: stats.Change | None


@dataclass
class Outcome:
    definition: ScoreDefinition
    #: Complete pairs: baseline and six-month values both present.
    n_pairs: Count
    paired: stats.Paired | None
    #: Quartiles of the pairs at baseline and six months (None when the pairs are not shown).
    spread: tuple[stats.Quartiles, stats.Quartiles] | None
    classes: dict[str, Count]
    reliable: dict[str, Count] | None
    min_reliable_change: float | None
    #: Sensitivity analysis: baseline responders no longer expected to answer, the six-month
    #: non-responders among them counted as unchanged (BOCF).
    n_bocf: Count
    bocf: stats.Paired | None
    bocf_improved: Count
    bins: list[Bin]
    by_group: dict[str, list[GroupOutcome]]

    @property
    def is_shown(self) -> bool:
        return self.paired is not None


@dataclass
class Report:
    filters: Filters
    k: int
    generated_at: dt.datetime
    unit_names: dict[int, str]
    steps: list[StepRow]
    closures: list[tuple[str, Count]]
    breakdowns: list[Breakdown]
    outcomes: list[Outcome]

    @property
    def referred(self) -> Count:
        return self.steps[0].count


@dataclass
class _ScoreData:
    """One score's pairs and non-responders, as chunks of arrays (one per batch)."""

    baseline: list[stats.Floats] = field(default_factory=list)
    six_month: list[stats.Floats] = field(default_factory=list)
    #: For each pair, the Accumulator's row of its case (to find the case's groups).
    case_rows: list[NDArray[np.int64]] = field(default_factory=list)
    #: Baselines of the BOCF non-responders (their six-month value is taken to equal these).
    non_responders: list[stats.Floats] = field(default_factory=list)


def _joined(chunks: list[NDArray[Any]], dtype: type) -> NDArray[Any]:
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)


class Accumulator:
    """Collects one pass over the case stream, a batch at a time, with array operations only;
    `finish` builds the suppressed report."""

    def __init__(self, definitions: Iterable[ScoreDefinition]) -> None:
        self.definitions = list(definitions)
        self.depths: Counter[int] = Counter()
        self.group_depths: dict[str, Counter[tuple[Hashable, int]]] = {
            dimension: Counter() for dimension in DIMENSIONS
        }
        self.sub_counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self._intervals: list[list[NDArray[np.int64]]] = [[] for _ in STEPS[:-1]]
        self.scores = {d.key: _ScoreData() for d in self.definitions}
        self.cases = 0
        #: Per dimension: each group's code (in the order first seen) and, in chunks, each added
        #: case's code.
        self._group_index: dict[str, dict[Hashable, int]] = {d: {} for d in DIMENSIONS}
        self._group_codes: dict[str, list[NDArray[np.intp]]] = {d: [] for d in DIMENSIONS}
        self._code_cache: dict[str, tuple[list[Hashable], NDArray[np.intp]]] = {}

    @property
    def intervals(self) -> list[NDArray[np.int64]]:
        """Per step but the last: days from its milestone to the next step's (cases with both)."""
        return [_joined(chunks, np.int64) for chunks in self._intervals]

    def add(self, batch: CaseBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        self._code_cache.clear()
        dates = batch.step_days
        reached = ~np.isnan(dates)
        depth = (reached * np.arange(len(STEPS))).max(axis=1)
        steps = len(STEPS)
        self.depths.update(_counts(np.bincount(depth, minlength=steps)))
        for dimension, counter in self.group_depths.items():
            index = self._group_index[dimension]
            values = batch.group(dimension).tolist()
            for group in sorted(set(values), key=lambda g: (str(type(g)), g)):
                index.setdefault(group, len(index))
            codes = np.fromiter(map(index.__getitem__, values), dtype=np.intp, count=n)
            self._group_codes[dimension].append(codes)
            groups = list(index)
            cells = np.bincount(codes * steps + depth, minlength=len(groups) * steps)
            for cell in np.flatnonzero(cells):
                counter[groups[cell // steps], int(cell % steps)] += int(cells[cell])
        self.sub_counts["screen_positive"] += int(
            np.count_nonzero(batch.is_screen_positive & (depth >= _BASELINE))
        )
        handover = ~np.isnan(batch.days[:, MOMENTS.index("handover_done")])
        self.sub_counts["handover_done"] += int(
            np.count_nonzero(handover & (depth >= _ACTION_PLAN))
        )
        self.statuses.update(Counter(batch.status.tolist()))
        for i in range(steps - 1):
            both = reached[:, i] & reached[:, i + 1]
            self._intervals[i].append((dates[both, i + 1] - dates[both, i]).astype(np.int64))
        rows = np.arange(self.cases, self.cases + n, dtype=np.int64)
        self.cases += n
        is_done = batch.status != OPEN
        for j, key in enumerate(batch.keys):
            data = self.scores.get(key)
            if data is None:
                continue
            baseline, six_month = batch.scores[:, j, 0], batch.scores[:, j, 1]
            has_baseline = ~np.isnan(baseline)
            pair = has_baseline & ~np.isnan(six_month)
            data.baseline.append(baseline[pair])
            data.six_month.append(six_month[pair])
            data.case_rows.append(rows[pair])
            data.non_responders.append(baseline[has_baseline & np.isnan(six_month) & is_done])

    # ------------------------------------------------------------------------------ finishing

    def finish(
        self, *, filters: Filters, k: int, unit_names: dict[int, str], terminal: Iterable[str]
    ) -> Report:
        steps, closures, breakdowns = self._flow(k, list(terminal))
        return Report(
            filters=filters,
            k=k,
            generated_at=dt.datetime.now(dt.UTC),
            unit_names=unit_names,
            steps=steps,
            closures=closures,
            breakdowns=breakdowns,
            outcomes=[self._outcome(d, k) for d in self.definitions],
        )

    def _codes(self, dimension: str) -> tuple[list[Hashable], NDArray[np.intp]]:
        """Every group of `dimension` (sorted) and each added case's group as a code; cached."""
        cached = self._code_cache.get(dimension)
        if cached is None:
            seen = list(self._group_index[dimension])
            groups = sorted(seen, key=lambda g: (str(type(g)), g))
            position = {g: i for i, g in enumerate(groups)}
            remap = np.array([position[g] for g in seen], dtype=np.intp)
            codes = _joined(self._group_codes[dimension], np.intp)
            cached = self._code_cache[dimension] = (groups, remap[codes] if len(seen) else codes)
        return cached

    def _flow(
        self, k: int, terminal: list[str]
    ) -> tuple[list[StepRow], list[tuple[str, Count]], list[Breakdown]]:
        table = CellTable()
        last = len(STEPS) - 1
        intervals = self.intervals

        def reached(depths: Counter[int], index: int) -> int:
            return sum(n for depth, n in depths.items() if depth >= index)

        for i, step in enumerate(STEPS):
            table.cell(("step", step), reached(self.depths, i), keep=1)
        for i in range(last):
            table.cell(("dropped", STEPS[i]), self.depths[i])
            table.add_sum(("step", STEPS[i]), [("dropped", STEPS[i]), ("step", STEPS[i + 1])])
        for sub, parent in SUB_STEPS.items():
            table.cell(("sub", sub), self.sub_counts[sub])
            rest = table.values[("step", parent)] - self.sub_counts[sub]
            table.cell(("not", sub), rest)  # implied by subtraction, protected, never printed
            table.add_sum(("step", parent), [("sub", sub), ("not", sub)])
        statuses = [OPEN, *terminal]
        for status in statuses:
            table.cell(("status", status), self.statuses[status])
        table.add_sum(("step", STEPS[0]), [("status", s) for s in statuses])
        group_lists: dict[str, list[Hashable]] = {}
        for dimension, counter in self.group_depths.items():
            groups = sorted({g for g, _d in counter}, key=lambda g: (str(type(g)), g))
            group_lists[dimension] = groups
            for group in groups:
                depths = Counter({d: n for (g, d), n in counter.items() if g == group})
                for i, step in enumerate(STEPS):
                    table.cell(("group", dimension, group, step), reached(depths, i))
                for i in range(last):
                    key = ("group-dropped", dimension, group, STEPS[i])
                    table.cell(key, depths[i])
                    table.add_sum(
                        ("group", dimension, group, STEPS[i]),
                        [key, ("group", dimension, group, STEPS[i + 1])],
                    )
            for step in STEPS:
                table.add_sum(("step", step), [("group", dimension, g, step) for g in groups])
        hidden = suppress(table, k)

        def count(key: Hashable) -> Count:
            return Count(table.values[key], hidden.get(key))

        rows: list[StepRow] = []
        for i, step in enumerate(STEPS):
            days = intervals[i] if i < last else None
            rows.append(
                StepRow(
                    key=step,
                    count=count(("step", step)),
                    dropped=count(("dropped", step)) if i < last else None,
                    days_to_next=_quartiles_if_enough(days, k),
                )
            )
            for sub, parent in SUB_STEPS.items():
                if parent == step:
                    rows.append(StepRow(sub, count(("sub", sub)), None, None, parent=parent))
        closures = [(status, count(("status", status))) for status in statuses]
        breakdowns = [
            Breakdown(
                dimension,
                [
                    (group, [count(("group", dimension, group, step)) for step in STEPS])
                    for group in group_lists[dimension]
                ],
            )
            for dimension in DIMENSIONS
        ]
        return rows, closures, breakdowns

    def _outcome(self, definition: ScoreDefinition, k: int) -> Outcome:
        data = self.scores[definition.key]
        baseline: stats.Floats = _joined(data.baseline, np.float64)
        six_month: stats.Floats = _joined(data.six_month, np.float64)
        non_responders: stats.Floats = _joined(data.non_responders, np.float64)
        diffs = stats.differences(baseline, six_month)
        lower = definition.is_lower_better
        n = len(diffs)
        table = CellTable()
        table.cell("pairs", n, keep=2)
        table.cell("bocf", n + len(non_responders))
        table.cell("non_responders", len(non_responders))
        table.add_sum("bocf", ["pairs", "non_responders"])
        classes = stats.classify(diffs, lower_better=lower)
        for name, value in zip(CLASSES, classes, strict=True):
            table.cell(("class", name), value, keep=1)
        table.add_sum("pairs", [("class", c) for c in CLASSES])
        table.cell("bocf_unchanged", classes[1] + len(non_responders))
        table.add_sum("bocf_unchanged", [("class", "unchanged"), "non_responders"])
        reliability = definition.reliability
        if reliability is not None:
            for name, value in zip(
                CLASSES, stats.reliable_change(diffs, reliability, lower_better=lower), strict=True
            ):
                table.cell(("reliable", name), value)
            table.add_sum("pairs", [("reliable", c) for c in CLASSES])
        bins = _bins(diffs, lower_better=lower)
        for index, (_low, _high, value, _side) in enumerate(bins):
            table.cell(("bin", index), value)
        table.add_sum("pairs", [("bin", i) for i in range(len(bins))])
        for name in CLASSES:
            members = [("bin", i) for i, b in enumerate(bins) if b[3] == name]
            table.add_sum(("class", name), members)
        improved_mask = diffs < 0 if lower else diffs > 0
        group_lists: dict[str, list[Hashable]] = {}
        group_codes: dict[str, NDArray[np.intp]] = {}
        rows = _joined(data.case_rows, np.int64)
        for dimension in DIMENSIONS:
            all_groups, all_codes = self._codes(dimension)
            present = np.unique(all_codes[rows])
            groups = [all_groups[i] for i in present]
            remap = np.full(len(all_groups), -1, dtype=np.intp)
            remap[present] = np.arange(len(present))
            codes = remap[all_codes[rows]]
            group_lists[dimension], group_codes[dimension] = groups, codes
            per_group = np.bincount(codes, minlength=len(groups))
            improved_per_group = np.bincount(codes[improved_mask], minlength=len(groups))
            for i, group in enumerate(groups):
                table.cell(("g", dimension, group), int(per_group[i]))
                table.cell(("gi", dimension, group), int(improved_per_group[i]))
                table.cell(("gn", dimension, group), int(per_group[i] - improved_per_group[i]))
                table.add_sum(
                    ("g", dimension, group), [("gi", dimension, group), ("gn", dimension, group)]
                )
            table.add_sum("pairs", [("g", dimension, g) for g in groups])
            table.add_sum(("class", "improved"), [("gi", dimension, g) for g in groups])
        hidden = suppress(table, k)

        def count(key: Hashable) -> Count:
            return Count(table.values[key], hidden.get(key))

        n_pairs = count("pairs")
        paired = _paired_if_enough(baseline, six_month, n_pairs, k)
        spread = (
            (stats.quartiles(baseline), stats.quartiles(six_month)) if paired is not None else None
        )
        n_bocf = count("bocf")
        bocf_base = np.concatenate([baseline, non_responders])
        by_group: dict[str, list[GroupOutcome]] = {}
        for dimension in DIMENSIONS:
            groups = group_lists[dimension]
            changes = stats.changes_by_group(diffs, group_codes[dimension], len(groups))
            outcomes = []
            for group, change in zip(groups, changes, strict=True):
                n_group = count(("g", dimension, group))
                enough = not n_group.is_hidden and n_group.value >= max(k, 2)
                outcomes.append(
                    GroupOutcome(
                        group=group,
                        n=n_group,
                        improved=count(("gi", dimension, group)),
                        paired=change if enough else None,
                    )
                )
            by_group[dimension] = outcomes
        return Outcome(
            definition=definition,
            n_pairs=n_pairs,
            paired=paired,
            spread=spread,
            classes={c: count(("class", c)) for c in CLASSES},
            reliable=(
                {c: count(("reliable", c)) for c in CLASSES} if reliability is not None else None
            ),
            min_reliable_change=(
                stats.RCI_CRITICAL * stats.s_diff(reliability) if reliability is not None else None
            ),
            n_bocf=n_bocf,
            bocf=_paired_if_enough(
                bocf_base, np.concatenate([six_month, bocf_base[n:]]), n_bocf, k
            ),
            bocf_improved=count(("class", "improved")),
            bins=[
                Bin(low, high, count(("bin", i)), side)
                for i, (low, high, _value, side) in enumerate(bins)
            ],
            by_group=by_group,
        )


def _counts(counts: NDArray[np.int64]) -> dict[int, int]:
    return {i: int(n) for i, n in enumerate(counts) if n}


def _empty() -> stats.Floats:
    return np.zeros(0, dtype=np.float64)


def _paired_if_enough(
    baseline: stats.Floats, six_month: stats.Floats, n: Count, k: int
) -> stats.Paired | None:
    """Statistics only on at least k (and at least two) persons whose count is shown: a hidden n
    would otherwise leak through the degrees of freedom."""
    if n.is_hidden or n.value < max(k, 2):
        return None
    return stats.paired(baseline, six_month)


def _quartiles_if_enough(days: NDArray[np.int64] | None, k: int) -> stats.Quartiles | None:
    if days is None or len(days) < max(k, 1):
        return None
    return stats.quartiles(days.astype(np.float64))


def _bins(diffs: stats.Floats, *, lower_better: bool) -> list[tuple[float, float, int, str]]:
    """The distribution of change: (low, high, count, side) per bin, zero always its own bin.
    Whole-number scores get one bin per value; others bins of a round width, at most
    MAX_BINS_PER_SIDE each side: [low, high) below zero, (low, high] above."""
    better, worse = ("improved", "worse") if lower_better else ("worse", "improved")
    if len(diffs) == 0:
        return [(0.0, 0.0, 0, "unchanged")]
    low, high = float(min(diffs.min(), 0.0)), float(max(diffs.max(), 0.0))
    if np.all(np.equal(np.mod(diffs, 1), 0)):
        counts = Counter(int(d) for d in diffs)
        return [
            (float(v), float(v), counts[v], better if v < 0 else worse if v > 0 else "unchanged")
            for v in range(int(low), int(high) + 1)
        ]
    width = _round_width(max(-low, high) / MAX_BINS_PER_SIDE)
    below = math.ceil(-low / width)
    above = math.ceil(high / width)
    result: list[tuple[float, float, int, str]] = []
    for j in range(below, 0, -1):
        lo, hi = -j * width, -(j - 1) * width
        n = int(np.count_nonzero((diffs >= lo) & (diffs < hi)))
        result.append((lo, hi, n, better))
    result.append((0.0, 0.0, int(np.count_nonzero(diffs == 0)), "unchanged"))
    for j in range(1, above + 1):
        lo, hi = (j - 1) * width, j * width
        n = int(np.count_nonzero((diffs > lo) & (diffs <= hi)))
        result.append((lo, hi, n, worse))
    return result


def _round_width(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n that is at least `raw`."""
    if raw <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * magnitude >= raw - 1e-12:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover
