"""Rollback: run every pending compensation, last in first out, and record each outcome."""

from __future__ import annotations

from livedrill.outcomes import Compensation
from livedrill.stages.session import DrillSession


def run_rollback(session: DrillSession) -> list[Compensation]:
    pending = session.journal.pending()
    if not pending:
        return session.journal.entries
    session.event("livedrill", "stage", stage="rollback", pending=[e.action for e in pending])
    adapter = session.adapter()
    try:
        actions = adapter.undo_actions(session.spec.budgets.abort_timeout_s)

        def undo_for(action: str):
            if action not in actions:
                raise KeyError(f"no undo known for {action!r} on this platform")
            return lambda params: actions[action](params)

        entries = session.journal.run_pending(undo_for)
    finally:
        adapter.close()
    for entry in entries:
        session.event("rollback", "compensation", action=entry.action, state=entry.state.value, outcome=entry.outcome)
    return entries


def retire_compensations(session: DrillSession, reason: str) -> None:
    session.journal.retire_all(reason)
