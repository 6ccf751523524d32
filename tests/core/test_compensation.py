"""Compensations: persisted at registration, run last-in-first-out, failures recorded for a human."""

import json

import pytest

from livedrill.compensation import CompensationJournal
from livedrill.outcomes import Compensation, CompensationState


def _journal(tmp_path):
    path = tmp_path / "compensations.json"

    def persist(entries):
        path.write_text(json.dumps([e.model_dump(mode="json") for e in entries]))

    return CompensationJournal(persist), path


def test_registration_is_persisted_before_returning(tmp_path):
    journal, path = _journal(tmp_path)
    journal.register("cordon-undo", {"node": "node-1"})
    on_disk = [Compensation.model_validate(e) for e in json.loads(path.read_text())]
    assert [(e.action, e.params, e.state) for e in on_disk] == [("cordon-undo", {"node": "node-1"}, CompensationState.PENDING)]


def test_undos_run_lifo_and_a_failure_does_not_stop_the_others(tmp_path):
    journal, path = _journal(tmp_path)
    for action in ("uncordon", "cancel-migration", "restore-labels"):
        journal.register(action, {"x": action})
    order = []

    def undo_for(action):
        def undo(params):
            order.append(action)
            if action == "cancel-migration":
                raise RuntimeError("API down")
            return f"{action} done"
        return undo

    journal.run_pending(undo_for)
    assert order == ["restore-labels", "cancel-migration", "uncordon"]
    states = {e.action: e.state for e in journal.entries}
    assert states == {"uncordon": CompensationState.DONE, "cancel-migration": CompensationState.FAILED,
                      "restore-labels": CompensationState.DONE}
    failed = journal.failed()[0]
    assert "API down" in failed.outcome and failed.manual_action
    reloaded = CompensationJournal(lambda e: None, [Compensation.model_validate(e) for e in json.loads(path.read_text())])
    assert reloaded.pending() == []  # a recovery after this finds nothing left but the failure to report


def test_running_twice_changes_nothing_more(tmp_path):
    journal, _ = _journal(tmp_path)
    journal.register("uncordon", {})
    calls = []
    journal.run_pending(lambda a: (lambda p: calls.append(a) or "ok"))
    journal.run_pending(lambda a: (lambda p: calls.append(a) or "ok"))
    assert calls == ["uncordon"]


def test_interruption_during_undo_is_recorded_and_re_raised(tmp_path):
    journal, _ = _journal(tmp_path)
    journal.register("cancel-migration", {})

    def interrupted(params):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        journal.run_pending(lambda a: interrupted)
    assert journal.entries[0].state is CompensationState.FAILED
    assert "recover" in journal.entries[0].manual_action


def test_retire_marks_pending_as_not_needed(tmp_path):
    journal, _ = _journal(tmp_path)
    journal.register("cancel-migration", {})
    journal.retire_all("drill completed")
    assert journal.entries[0].state is CompensationState.NOT_NEEDED and journal.pending() == []


def test_an_undo_not_observed_in_time_records_the_platforms_manual_action(tmp_path):
    from livedrill.errors import UndoNotObserved

    journal, _ = _journal(tmp_path)
    journal.register("cancel-migration", {"name": "m-1"})

    def undo(params):
        raise UndoNotObserved("cancel of m-1 not observed within 1 s", manual_action="watch m-1 until it ends")

    [entry] = journal.run_pending(lambda action: undo)
    assert (entry.state, entry.outcome, entry.manual_action) == (
        CompensationState.FAILED, "cancel of m-1 not observed within 1 s", "watch m-1 until it ends")
