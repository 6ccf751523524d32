"""The end of every drill: the verdict, the run record, and the sealed evidence."""

from __future__ import annotations

import json
import logging

from livedrill import __version__
from livedrill.decisions import DrillFacts, judge
from livedrill.deploy.approval import APPROVAL_FILE
from livedrill.evidence.timestamp import TimestampAuthority, TimestampError
from livedrill.evidence.worm import StoreUnavailable, publish_timestamp, seal_run
from livedrill.outcomes import Verdict, utcnow
from livedrill.stages.session import DrillSession, operator

VERDICT_FILE = "verdict.json"
RUN_FILE = "run.json"
_log = logging.getLogger(__name__)


def finish(session: DrillSession, facts: DrillFacts, started_at: str) -> Verdict:
    verdict = judge(facts).model_copy(update={"evidence_dir": str(session.run.path)})
    session.event("livedrill", "verdict", outcome=verdict.outcome.value, reasons=verdict.reasons)
    session.run.write_json(VERDICT_FILE, verdict)
    approval_path = session.run.path / APPROVAL_FILE
    given = json.loads(approval_path.read_text(encoding="utf-8")) if approval_path.exists() else None
    approval = {"approved_by": given.get("approver"), "change_ticket": given.get("change_ticket"),
                "decision": given.get("decision"), "comment": given.get("comment")} if given else None
    session.run.write_json(RUN_FILE, {
        "run_id": session.run_id, "drill": session.spec.name, "cluster": session.spec.cluster,
        "platform": session.spec.platform.kind, "mode": session.spec.mode.kind,
        "vms": [str(v) for v in session.spec.vms], "started_at": started_at, "ended_at": utcnow().isoformat(),
        "outcome": verdict.outcome.value, "operator": operator(), "livedrill_version": __version__,
        "approval": approval,
    })
    seal_evidence(session)
    return verdict


def seal_evidence(session: DrillSession) -> None:
    """Seal the run (into the spec's object store when it names one) and timestamp it when the spec names a TSA.

    Neither an unreachable store nor an unreachable TSA changes the verdict: the run stays unsealed here until
    `livedrill recover` seals it, or sealed without a timestamp until `livedrill evidence timestamp` adds one.
    """
    evidence = session.spec.evidence
    try:
        seal_run(session.run, session.signer(), evidence.store, witness=evidence.witness)
    except StoreUnavailable as exc:
        _log.warning("%s", exc)
        return
    if evidence.tsa is None:
        return
    tsa = TimestampAuthority(**evidence.tsa.model_dump())  # the spec section has exactly its fields
    try:
        session.run.timestamp(tsa)
        if evidence.store is not None:
            publish_timestamp(session.run, evidence.store)
    except (TimestampError, StoreUnavailable) as exc:
        _log.warning("run %s sealed without a timestamp: %s", session.run_id, exc)
