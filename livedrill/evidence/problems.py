"""What verification reports: one Problem per thing wrong, with the run, the file and expected vs actual."""

from __future__ import annotations

from collections.abc import Iterable

from livedrill.outcomes import Record


class Problem(Record):
    """One thing wrong with the archive. `code` is stable for programs; `message` is for people."""

    code: str
    message: str
    run_id: str | None = None
    file: str | None = None
    expected: str | None = None
    actual: str | None = None


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem: `[code] run <id>: <file>: message (expected ..., actual ...)`."""
    lines = []
    for p in problems:
        where = "".join(part for part in (f"run {p.run_id}: " if p.run_id else "", f"{p.file}: " if p.file else ""))
        detail = []
        if p.expected is not None:
            detail.append(f"expected {p.expected}")
        if p.actual is not None:
            detail.append(f"actual {p.actual}")
        suffix = f" ({', '.join(detail)})" if detail else ""
        lines.append(f"[{p.code}] {where}{p.message}{suffix}")
    return "\n".join(lines)
