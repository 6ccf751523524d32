"""Finishing a drill whose process died (SIGKILL, node crash): roll back from the persisted record, then seal.

A run is "owned" by the process that created it (owner.json: pid + process start time + host). Only a run
whose owner is gone is recovered; a live owner means a drill is in progress on that cluster.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import psutil

from livedrill.decisions import DrillFacts
from livedrill.evidence.archive import Archive, EvidenceRun
from livedrill.outcomes import CheckResult, CheckStatus, Verdict, utcnow
from livedrill.stages.finish import VERDICT_FILE, finish, seal_evidence
from livedrill.stages.preflight import read_preflight
from livedrill.stages.rollback import run_rollback
from livedrill.stages.session import DrillSession

OWNER_FILE = "owner.json"


class RunInProgress(Exception):
    pass


def claim(run: EvidenceRun) -> None:
    me = psutil.Process(os.getpid())
    run.write_json(OWNER_FILE, {"pid": me.pid, "create_time": me.create_time(), "host": socket.gethostname(),
                                "claimed_at": utcnow().isoformat()})


def owner_alive(owner: dict, host: str | None = None) -> bool:
    """Pure enough to table-test: is the recorded owner this host's still-running process?"""
    if not owner:
        return False
    if owner.get("host") != (host or socket.gethostname()):
        return True  # another host's drill: its liveness cannot be judged from here, so it is not taken over
    try:
        process = psutil.Process(int(owner["pid"]))
        return abs(process.create_time() - float(owner["create_time"])) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, ValueError):
        return False


def read_owner(run: EvidenceRun) -> dict:
    try:
        return json.loads((run.path / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def recover_run(run: EvidenceRun, *, force: bool = False) -> Verdict | None:
    """Roll back what the crashed drill left pending and seal its evidence. Idempotent: a sealed run is left alone.

    `force` takes over a run owned by another host, which only a human can know to be dead.
    """
    if run.sealed:
        return None
    owner = read_owner(run)
    if owner_alive(owner) and not (force and owner.get("host") != socket.gethostname()):
        raise RunInProgress(f"run {run.run_id} is owned by process {owner.get('pid')} on {owner.get('host')}, "
                            "which is alive or cannot be checked from here: a drill may be in progress"
                            + ("" if owner.get("host") == socket.gethostname() else
                               "; if that host is down, run `livedrill recover --force`"))
    session = DrillSession.reopen(run.path)
    claim(run)
    pending = [e.action for e in session.journal.pending()]
    session.event("livedrill", "recovery-started", previous_owner=owner, pending=pending)
    entries = run_rollback(session)
    verdict_path = run.path / VERDICT_FILE
    if verdict_path.exists() and not pending:
        # The drill had judged itself and died while sealing: its verdict stands, only the seal is missing.
        seal_evidence(session)
        return Verdict.model_validate_json(verdict_path.read_text(encoding="utf-8"))
    recorded = read_preflight(run.path)
    preflight = recorded.checks if recorded is not None else []
    interrupted = CheckResult(
        name="drill-completed", status=CheckStatus.FAIL, subject=f"run {run.run_id}",
        message="the drill process stopped before it finished (crash or kill); `livedrill recover` rolled back and sealed it",
        evidence={"previous_owner": owner, "pending_at_recovery": pending})
    started_at = owner.get("claimed_at") or utcnow().isoformat()
    facts = DrillFacts(preflight, [interrupted], [], entries, started_mutating=bool(entries))
    return finish(session, facts, started_at)


def crashed_runs(archive_dir: Path, cluster: str, exclude: str | None = None) -> tuple[list[EvidenceRun], list[EvidenceRun]]:
    """Unsealed runs of `cluster`: (those whose owner is gone, those still owned by a live drill)."""
    dead, live = [], []
    archive = Archive(archive_dir)
    for run in archive.unsealed_runs():
        if run.run_id == exclude:
            continue
        try:
            spec_cluster = _cluster_of(run)
        except (OSError, ValueError):
            continue
        if spec_cluster != cluster:
            continue
        (live if owner_alive(read_owner(run)) else dead).append(run)
    return dead, live


def _cluster_of(run: EvidenceRun) -> str:
    import yaml

    return yaml.safe_load((run.path / "spec.yaml").read_text(encoding="utf-8")).get("cluster", "")
