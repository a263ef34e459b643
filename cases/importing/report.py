"""What an import refuses: each bad input is one ``Problem``, and every problem found goes
into one ``ImportRejected`` report, so that a person fixes the bundle once, not once per
error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input; ``row`` is the CSV line number (header = 1)."""

    message: str
    row: int | None = None
    case_id: str = ""

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.case_id:
            where.append(f"case {self.case_id!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ImportRejected(Exception):
    """The import was refused; nothing was written. ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(self.report())

    def report(self) -> str:
        lines = [f"Import refused, nothing was written ({len(self.problems)} problem(s)):"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)
