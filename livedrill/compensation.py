"""Compensations as data: every side effect registers its undo the moment it succeeds.

The journal is persisted (through the `persist` callable, which writes the run's evidence file
atomically) before the drill takes its next step, so a drill killed with SIGKILL can be recovered
from disk: Prefect's rollback hooks never run in that case.
"""

from __future__ import annotations

from typing import Any, Callable

from livedrill.errors import UndoNotObserved
from livedrill.outcomes import Compensation, CompensationState, utcnow

Persist = Callable[[list[Compensation]], None]
# An undo action: given the params registered, performs the undo and returns a description of the outcome.
Undo = Callable[[dict[str, Any]], str]


class CompensationJournal:
    def __init__(self, persist: Persist, entries: list[Compensation] | None = None):
        self._persist = persist
        self.entries: list[Compensation] = list(entries or [])

    def register(self, action: str, params: dict[str, Any]) -> Compensation:
        entry = Compensation(id=len(self.entries) + 1, action=action, params=params, registered_at=utcnow())
        self.entries.append(entry)
        self._persist(self.entries)
        return entry

    def pending(self) -> list[Compensation]:
        """Pending undos, last registered first (the order they must run in)."""
        return [e for e in reversed(self.entries) if e.state is CompensationState.PENDING]

    def settle(self, entry: Compensation, state: CompensationState, outcome: str, manual_action: str | None = None) -> None:
        index = self.entries.index(entry)
        self.entries[index] = entry.model_copy(update={"state": state, "outcome": outcome, "manual_action": manual_action})
        self._persist(self.entries)

    def retire_all(self, reason: str) -> None:
        """The drill ended normally: nothing left to undo."""
        for entry in self.pending():
            self.settle(entry, CompensationState.NOT_NEEDED, reason)

    def run_pending(self, undo_for: Callable[[str], Undo]) -> list[Compensation]:
        """Run every pending undo, LIFO. A failing undo is recorded and the others still run."""
        for entry in self.pending():
            try:
                outcome = undo_for(entry.action)(entry.params)
            except (KeyboardInterrupt, SystemExit):
                self.settle(entry, CompensationState.FAILED, "interrupted while undoing",
                            manual_action=f"re-run `livedrill recover` to finish: {entry.action} {entry.params}")
                raise
            except UndoNotObserved as exc:
                self.settle(entry, CompensationState.FAILED, str(exc), manual_action=exc.manual_action)
                continue
            except Exception as exc:  # noqa: BLE001 - every failure is recorded for a human
                self.settle(entry, CompensationState.FAILED, f"{type(exc).__name__}: {exc}",
                            manual_action=f"undo by hand: {entry.action} with {entry.params}")
                continue
            self.settle(entry, CompensationState.DONE, outcome)
        return self.entries

    def failed(self) -> list[Compensation]:
        return [e for e in self.entries if e.state is CompensationState.FAILED]
