"""Small-number suppression for published tables of counts (domain facts §2.6, fact 16).

A table is a set of **cells** (counts of persons) and **sums**: each sum says one cell (a total)
equals the sum of other cells (its parts), as a row or column of a table does, or a funnel step
(reached step i = stopped at step i + reached step i+1). Cells that are not printed but follow
from printed ones (a difference of two printed counts) are cells too, so they are protected.

The algorithm, run to a fixed point:

1. **Primary**: every cell with 1 … k−1 persons is hidden. Zero is shown.
2. **Secondary, by subtraction**: a sum with exactly one hidden member would give that member away
   (total minus the other parts). Hide one more member of that sum: the non-zero shown member
   that matters least (lowest `keep`, e.g. a sensitivity count before the number of pairs),
   then the smallest, then a part before a total of the same size. Repeat until no sum has
   exactly one hidden member.
3. **Audit**: the hidden cells must not follow from *any combination* of sums either (two tables
   sharing totals, a chain of funnel steps). Solve the linear system of all sums for the hidden
   cells; a hidden cell that takes the same value in every solution (its component of every
   null-space vector is zero) is exposed: hide the smallest shown non-zero member of one of its
   sums and go back to 2.

Hidden cells are never zero, so every hidden cell lies strictly inside the solution set and can
move by at least one in both directions: no hidden count can be recovered exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import null_space

PRIMARY = "primary"
SECONDARY = "secondary"


@dataclass
class CellTable:
    """Cells and the sums that tie them together; `suppress` decides which to hide."""

    values: dict[Hashable, int] = field(default_factory=dict)
    #: How much a cell matters to readers: secondary suppression hides lower values first.
    keep: dict[Hashable, int] = field(default_factory=dict)
    #: (total, parts): values[total] == sum(values[p] for p in parts).
    sums: list[tuple[Hashable, tuple[Hashable, ...]]] = field(default_factory=list)

    def cell(self, key: Hashable, value: int, *, keep: int = 0) -> Hashable:
        if key in self.values and self.values[key] != value:
            raise ValueError(f"cell {key!r} given two values")
        self.values[key] = int(value)
        self.keep[key] = max(keep, self.keep.get(key, 0))
        return key

    def add_sum(self, total: Hashable, parts: Iterable[Hashable]) -> None:
        parts = tuple(parts)
        if self.values[total] != sum(self.values[p] for p in parts):
            raise ValueError(f"the parts of {total!r} do not add up")
        self.sums.append((total, parts))


def suppress(table: CellTable, k: int) -> dict[Hashable, str]:
    """The hidden cells of `table`, each marked PRIMARY (fewer than k persons) or SECONDARY
    (hidden so that a primary cell cannot be worked out)."""
    hidden: dict[Hashable, str] = {
        key: PRIMARY for key, value in table.values.items() if 0 < value < k
    }
    if not hidden:
        return hidden
    lines = [(total, *parts) for total, parts in table.sums]
    lines_of: dict[Hashable, list[int]] = {}
    for index, line in enumerate(lines):
        for key in line:
            lines_of.setdefault(key, []).append(index)

    def hide_one_more(line: tuple[Hashable, ...]) -> bool:
        total = line[0]
        candidates = [key for key in line if key not in hidden and table.values[key] > 0]
        if not candidates:
            return False
        chosen = min(
            candidates,
            key=lambda key: (table.keep.get(key, 0), table.values[key], key == total),
        )
        hidden[chosen] = SECONDARY
        return True

    while True:
        changed = True
        while changed:
            changed = False
            for line in lines:
                if sum(1 for key in line if key in hidden) == 1 and hide_one_more(line):
                    changed = True
        exposed = _exposed(table, lines, hidden)
        if not exposed:
            return hidden
        if not any(_protect(key, lines, lines_of, hidden, hide_one_more) for key in exposed[:1]):
            return hidden  # pragma: no cover - every sum of the cell is fully hidden already


def _protect(
    key: Hashable,
    lines: list[tuple[Hashable, ...]],
    lines_of: dict[Hashable, list[int]],
    hidden: dict[Hashable, str],
    hide_one_more: Callable[[tuple[Hashable, ...]], bool],
) -> bool:
    """Hide one more cell near `key`: in its own sums first, then further out (breadth first)."""
    seen_lines: set[int] = set()
    frontier = [key]
    seen_keys = {key}
    while frontier:
        next_frontier: list[Hashable] = []
        for cell in frontier:
            for index in lines_of.get(cell, []):
                if index in seen_lines:
                    continue
                seen_lines.add(index)
                if hide_one_more(lines[index]):
                    return True
                for other in lines[index]:
                    if other not in seen_keys:
                        seen_keys.add(other)
                        next_frontier.append(other)
        frontier = next_frontier
    return False


def _exposed(
    table: CellTable, lines: list[tuple[Hashable, ...]], hidden: dict[Hashable, str]
) -> list[Hashable]:
    """Hidden cells whose value follows from the shown cells and the sums (linear algebra)."""
    order = sorted(hidden, key=lambda key: (table.values[key], repr(key)))
    column = {key: i for i, key in enumerate(order)}
    rows = [line for line in lines if any(key in column for key in line)]
    if not rows:
        return []
    matrix = np.zeros((len(rows), len(order)))
    for r, line in enumerate(rows):
        for position, key in enumerate(line):
            if key in column:
                matrix[r, column[key]] += 1.0 if position == 0 else -1.0
    basis = null_space(matrix)
    if basis.shape[1] == 0:
        return order
    free = np.abs(basis).max(axis=1) > 1e-9
    return [key for key in order if not free[column[key]]]


def shown(value: int, mark: str | None, k: int) -> str:
    """How a count is printed: the number, "<k" (primary) or ".." (secondary)."""
    if mark == PRIMARY:
        return f"<{k}"
    if mark == SECONDARY:
        return ".."
    return str(value)
