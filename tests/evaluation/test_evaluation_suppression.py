"""Small-number suppression: every cell below k is hidden, and no hidden cell can be worked out
from the totals: checked by brute force (a search for a second solution) on random tables, and
with integer programming on the evaluation report's published flow tables."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Hashable

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from slussen.evaluation.dataset import STEPS, CaseBatch, CaseRecord, Filters
from slussen.evaluation.report import Accumulator, Count
from slussen.evaluation.suppression import PRIMARY, CellTable, shown, suppress

K = 5


def grid(cells: list[list[int]]) -> CellTable:
    """A table with row totals, column totals and a grand total, as published."""
    table = CellTable()
    rows, cols = len(cells), len(cells[0])
    for r in range(rows):
        for c in range(cols):
            table.cell((r, c), cells[r][c])
        table.cell((r, "total"), sum(cells[r]))
        table.add_sum((r, "total"), [(r, c) for c in range(cols)])
    for c in range(cols):
        table.cell(("total", c), sum(cells[r][c] for r in range(rows)))
        table.add_sum(("total", c), [(r, c) for r in range(rows)])
    table.cell(("total", "total"), sum(map(sum, cells)))
    table.add_sum(("total", "total"), [(r, "total") for r in range(rows)])
    table.add_sum(("total", "total"), [("total", c) for c in range(cols)])
    return table


def another_solution_exists(table: CellTable, hidden: set[Hashable], target: Hashable) -> bool:
    """Brute force: is there a filling of the hidden cells with non-negative whole numbers that
    agrees with every shown cell and every sum, but gives `target` another value?"""
    bound = max(table.values.values())
    sums = [(total, parts) for total, parts in table.sums]

    def propagate(assigned: dict[Hashable, int]) -> dict[Hashable, int] | None:
        assigned = dict(assigned)
        changed = True
        while changed:
            changed = False
            for total, parts in sums:
                members = [total, *parts]
                open_ = [m for m in members if m not in assigned]
                if len(open_) == 0:
                    if assigned[total] != sum(assigned[p] for p in parts):
                        return None
                elif len(open_) == 1:
                    missing = open_[0]
                    if missing == total:
                        value = sum(assigned[p] for p in parts)
                    else:
                        value = assigned[total] - sum(assigned[p] for p in parts if p != missing)
                    if value < 0 or value > bound:
                        return None
                    assigned[missing] = value
                    changed = True
        return assigned

    def search(assigned: dict[Hashable, int]) -> bool:
        state = propagate(assigned)
        if state is None:
            return False
        free = [key for key in hidden if key not in state]
        if not free:
            return state[target] != table.values[target]
        key = target if target in free else free[0]
        for value in range(bound + 1):
            if key == target and value == table.values[target]:
                continue
            if search({**state, key: value}):
                return True
        return False

    known = {key: value for key, value in table.values.items() if key not in hidden}
    return search(known)


def small_table(rng: random.Random) -> list[list[int]]:
    rows, cols = rng.randint(2, 3), rng.randint(2, 4)
    return [[rng.choice([0, 1, 2, 3, 4, 6, 8, 11]) for _ in range(cols)] for _ in range(rows)]


@pytest.mark.parametrize("seed", range(60))
def test_no_hidden_cell_of_a_random_table_can_be_worked_out(seed: int) -> None:
    table = grid(small_table(random.Random(seed)))
    hidden = suppress(table, K)
    for key, value in table.values.items():
        if 0 < value < K:
            assert hidden.get(key) == PRIMARY, key
        if key not in hidden:
            assert value == 0 or value >= K or key in hidden
    for total, parts in table.sums:
        assert sum(1 for m in (total, *parts) if m in hidden) != 1, "a sum gives a cell away"
    for key in hidden:
        assert table.values[key] > 0  # zeros are never hidden: they protect nothing
        assert another_solution_exists(table, set(hidden), key), f"{key} can be worked out"


def test_a_bridge_between_two_protected_blocks_is_caught_by_the_audit() -> None:
    """Every row and column has at least two hidden cells, yet the 2 between the two blocks of
    ones follows from them (rows 0+1 minus columns 0+1): the linear-algebra audit finds it and
    hides more."""
    cells = [
        [1, 1, 9, 9],
        [1, 1, 2, 9],
        [9, 9, 1, 1],
        [9, 9, 1, 1],
    ]
    table = grid(cells)
    primary = {key for key, value in table.values.items() if 0 < value < K}
    assert not another_solution_exists(table, primary, (1, 2))  # the trap is real
    hidden = suppress(table, K)
    assert set(hidden) > primary
    for key in hidden:
        assert another_solution_exists(table, set(hidden), key), key


def test_what_a_hidden_count_looks_like() -> None:
    assert shown(3, PRIMARY, 5) == "<5"
    assert shown(12, "secondary", 5) == ".."
    assert shown(12, None, 5) == "12"
    assert shown(0, None, 5) == "0"
    assert shown(2, PRIMARY, 10) == "<10"


def test_nothing_is_hidden_without_small_numbers() -> None:
    assert suppress(grid([[5, 7], [0, 9]]), K) == {}


# --- the report's flow tables ---------------------------------------------------------------


def synthetic_records(seed: int, n: int) -> list[CaseRecord]:
    rng = random.Random(seed)
    records = []
    day = dt.date(2026, 1, 5)
    for i in range(n):
        depth = rng.choice([0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 6, 7, 7, 7])
        moments: dict[str, dt.date | None] = {
            step: (day if index <= depth else None) for index, step in enumerate(STEPS)
        }
        moments["handover_done"] = day if depth >= 4 and rng.random() < 0.3 else None
        records.append(
            CaseRecord(
                pseudonym=f"S{i:06d}",
                unit_id=rng.choice([1, 2, 3]),
                channel=rng.choice(["phone", "staff_flag"]),
                age_band=rng.choice(["65-79", "80+"]),
                sex=rng.choice(["female", "male"]),
                status="open" if depth < 7 and rng.random() < 0.5 else "closed_declined",
                moments=moments,
                is_screen_positive=depth >= 2 and rng.random() < 0.2,
            )
        )
    return records


def published_flow(
    seed: int, n: int
) -> tuple[list[tuple[str, Count]], list[tuple[list[str], list[str]]], list[tuple[str, str]]]:
    """The report's flow as an outsider sees it: named published counts, the equalities that
    hold between them (total = sum of parts) and the order relations (a ≥ b)."""
    accumulator = Accumulator([])
    records = synthetic_records(seed, n)
    # In two batches, as the stream gives them.
    accumulator.add(CaseBatch.from_records(records[: n // 2]))
    accumulator.add(CaseBatch.from_records(records[n // 2 :]))
    report = accumulator.finish(
        filters=Filters(), k=K, unit_names={}, terminal=["closed_declined", "closed_other"]
    )
    cells: list[tuple[str, Count]] = []
    sums: list[tuple[list[str], list[str]]] = []
    order: list[tuple[str, str]] = []
    main = [row for row in report.steps if row.parent is None]
    for i, row in enumerate(main):
        cells.append((f"S{i}", row.count))
        if row.dropped is not None:
            cells.append((f"D{i}", row.dropped))
            sums.append(([f"S{i}"], [f"D{i}", f"S{i + 1}"]))
    for row in report.steps:
        if row.parent is not None:
            cells.append((row.key, row.count))
            order.append((f"S{STEPS.index(row.parent)}", row.key))
    closure_keys = []
    for status, count in report.closures:
        cells.append((f"C-{status}", count))
        closure_keys.append(f"C-{status}")
    sums.append((["S0"], closure_keys))
    for breakdown in report.breakdowns:
        for i in range(len(STEPS)):
            keys = []
            for group, counts in breakdown.rows:
                key = f"G-{breakdown.dimension}-{group}-{i}"
                cells.append((key, counts[i]))
                keys.append(key)
                if i > 0:
                    order.append((f"G-{breakdown.dimension}-{group}-{i - 1}", key))
            sums.append(([f"S{i}"], keys))
    return cells, sums, order


def extremes(
    cells: list[tuple[str, Count]],
    sums: list[tuple[list[str], list[str]]],
    order: list[tuple[str, str]],
    objective: dict[str, float],
) -> tuple[float, float]:
    """The smallest and largest value of a linear objective over every whole-number filling of
    the hidden cells that agrees with everything published (scipy.optimize.milp)."""
    names = [name for name, _c in cells]
    index = {name: i for i, name in enumerate(names)}
    lower = np.array([0.0 if c.is_hidden else c.value for _n, c in cells])
    upper = np.array([np.inf if c.is_hidden else c.value for _n, c in cells])
    rows, lo, hi = [], [], []
    for totals, parts in sums:
        row = np.zeros(len(names))
        for t in totals:
            row[index[t]] += 1
        for p in parts:
            row[index[p]] -= 1
        rows.append(row)
        lo.append(0.0)
        hi.append(0.0)
    for big, small in order:
        row = np.zeros(len(names))
        row[index[big]] += 1
        row[index[small]] -= 1
        rows.append(row)
        lo.append(0.0)
        hi.append(np.inf)
    constraints = LinearConstraint(np.array(rows), lo, hi)
    c = np.zeros(len(names))
    for name, weight in objective.items():
        c[index[name]] = weight
    found = []
    for sign in (1, -1):
        result = milp(
            sign * c,
            constraints=constraints,
            integrality=np.ones(len(names)),
            bounds=Bounds(lower, upper),
        )
        assert result.success
        found.append(sign * result.fun)
    return found[0], found[1]


@pytest.mark.parametrize("seed", range(4))
def test_no_hidden_count_of_the_report_flow_can_be_worked_out(seed: int) -> None:
    cells, sums, order = published_flow(seed, n=rng_size(seed))
    for name, count in cells:
        if 0 < count.value < K:
            assert count.is_hidden, name
        if count.is_hidden:
            low, high = extremes(cells, sums, order, {name: 1.0})
            assert low < high, f"{name} is {low} in every solution"
    # The per-group drop-off and "of whom not" are never printed but follow from two printed
    # counts: they are protected too.
    for big, small in order:
        value = dict(cells)[big].value - dict(cells)[small].value
        if 0 < value < K:
            low, high = extremes(cells, sums, order, {big: 1.0, small: -1.0})
            assert low < high, f"{big} − {small} = {value} can be worked out"


def rng_size(seed: int) -> int:
    return 25 + 9 * seed
