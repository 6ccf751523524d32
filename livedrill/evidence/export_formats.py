"""Machine-readable exports of sealed drills: OSCAL assessment-results and in-toto test-result statements.

Identifiers are derived (UUID v5) from run ids and manifest hashes, so exporting the same quarter
twice yields the same documents apart from their generation time.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from livedrill.evidence.export_summary import DrillSummary, checks_by_status, intoto_result
from livedrill.evidence.keys import Signer

OSCAL_VERSION = "1.2.1"
# Namespace of livedrill's own OSCAL property names (a URN: it names, it does not resolve).
OSCAL_PROPS_NS = "urn:livedrill:oscal"
_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:livedrill:evidence")
# NIST SP 800-53 CP-4 "Contingency Plan Testing": a live-migration drill tests the continuity plan.
REVIEWED_CONTROL = "cp-4"

INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT_PREDICATE = "https://in-toto.io/attestation/test-result/v0.1"
DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def oscal_uuid(*parts: str) -> str:
    """A stable OSCAL uuid for what `parts` name (the same bundle inputs give the same document)."""
    return _uuid(*parts)


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NS, "/".join(parts)))


def _iso(value: datetime) -> str:
    return value.isoformat()


def run_href(run_id: str, rel: str) -> str:
    """Where a run's file sits inside the bundle."""
    return f"archive/{run_id}/{rel}"


def _prop(name: str, value: Any) -> dict[str, str]:
    return {"name": name, "ns": OSCAL_PROPS_NS, "value": str(value)}


def _observation(summary: DrillSummary, key: str, title: str, description: str, files: list[str]) -> dict[str, Any]:
    return {
        "uuid": _uuid(summary.manifest_sha256, "observation", key),
        "title": title,
        "description": description,
        "methods": ["TEST"],
        "collected": _iso(summary.sealed_at),
        "relevant-evidence": [{"href": run_href(summary.run_id, f), "description": f"{f} of run {summary.run_id}"} for f in files],
    }


def _result(summary: DrillSummary) -> dict[str, Any]:
    passed, warned, failed = checks_by_status(summary)
    satisfied = summary.outcome == "PASSED"
    downtime = "not measured" if summary.observed_downtime_ms is None else f"{summary.observed_downtime_ms:.1f} ms"
    observations = [
        _observation(summary, "preflight", "Pre-flight and compliance checks", f"{len(summary.preflight)} checks before any change: "
                     + "; ".join(f"{c.name}={c.status}" for c in summary.preflight) if summary.preflight else "no pre-flight record",
                     ["preflight.json", "spec.yaml"]),
        _observation(summary, "migration", "Live migration and transaction probes", f"outcome {summary.outcome}; observed downtime {downtime}; "
                     f"{sum(p.sent for p in summary.probes)} probe transactions", ["timeline.jsonl"] + (["probe/report.json"] if summary.probes else [])),
        _observation(summary, "aftermath", "Post-checks and rollback", f"{len(summary.postcheck)} post-checks; {len(summary.compensations)} rollback actions: "
                     + (", ".join(f"{c.action}={c.state}" for c in summary.compensations) or "none"), ["postcheck.json", "compensations.json"]),
    ]
    finding_description = (
        f"Drill {summary.drill} ({summary.run_id}) {summary.outcome}. Passed {len(passed)}, warned {len(warned)}, failed {len(failed)} checks."
        + (f" Reasons: {'; '.join(summary.reasons)}" if summary.reasons else "")
    )
    result: dict[str, Any] = {
        "uuid": _uuid(summary.manifest_sha256, "result"),
        "title": f"Live-migration drill {summary.drill} {summary.run_id}",
        "description": f"Quarterly live-migration drill of {', '.join(summary.vms) or 'the core VMs'} on {summary.platform or '?'} cluster {summary.cluster or '?'}, "
                       f"sealed as run {summary.sequence} of the evidence archive (manifest sha256 {summary.manifest_sha256}).",
        "start": _iso(summary.started_at or summary.sealed_at),
        "props": [_prop("run-id", summary.run_id), _prop("outcome", summary.outcome), _prop("manifest-sha256", summary.manifest_sha256), _prop("signing-key-id", summary.key_id)]
                 + ([_prop("approved-by", summary.approved_by)] if summary.approved_by else [])
                 + ([_prop("change-ticket", summary.change_ticket)] if summary.change_ticket else []),
        "reviewed-controls": {"control-selections": [{"include-controls": [{"control-id": REVIEWED_CONTROL}]}]},
        "observations": observations,
        "findings": [
            {
                "uuid": _uuid(summary.manifest_sha256, "finding"),
                "title": f"Continuity drill {summary.drill}: {'satisfied' if satisfied else 'not satisfied'}",
                "description": finding_description,
                "target": {"type": "objective-id", "target-id": f"{REVIEWED_CONTROL}_obj", "status": {"state": "satisfied" if satisfied else "not-satisfied"}},
                "related-observations": [{"observation-uuid": o["uuid"]} for o in observations],
            }
        ],
    }
    if summary.ended_at:
        result["end"] = _iso(summary.ended_at)
    return result


def oscal_assessment_results(summaries: list[DrillSummary], *, quarter: str, generated_at: datetime, chain_head_sha256: str,
                             extra_results: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """One OSCAL assessment-results document for a quarter: one result per sealed drill, then `extra_results`."""
    if not summaries:
        raise ValueError("OSCAL assessment-results need at least one result: no sealed drill in the quarter")
    return {
        "assessment-results": {
            "uuid": _uuid("assessment-results", quarter, chain_head_sha256),
            "metadata": {
                "title": f"Live-migration drill results {quarter} / {quarter} 热迁移演练结果",
                "last-modified": _iso(generated_at),
                "version": quarter,
                "oscal-version": OSCAL_VERSION,
                "props": [_prop("chain-head-sha256", chain_head_sha256)],
            },
            "import-ap": {
                "href": "report.html#plan",
                "remarks": "The assessment plan of each drill is its spec as run (archive/<run>/spec.yaml), approved as recorded in run.json.",
            },
            "results": [*(_result(s) for s in summaries), *extra_results],
            "back-matter": {
                "resources": [
                    {
                        "uuid": _uuid(s.manifest_sha256, "manifest"),
                        "title": f"Signed manifest of run {s.run_id}",
                        "rlinks": [{"href": run_href(s.run_id, "MANIFEST.json"), "media-type": "application/json", "hashes": [{"algorithm": "SHA-256", "value": s.manifest_sha256}]}],
                    }
                    for s in summaries
                ]
            },
        }
    }


def intoto_statement(summary: DrillSummary, spec_sha256: str | None) -> dict[str, Any]:
    """An in-toto Statement v1 with the test-result predicate; its subject is the run's sealed manifest."""
    passed, warned, failed = checks_by_status(summary)
    configuration = [{"name": "spec.yaml", "uri": run_href(summary.run_id, "spec.yaml"), "mediaType": "application/yaml"}]
    if spec_sha256:
        configuration[0]["digest"] = {"sha256": spec_sha256}
    return {
        "_type": INTOTO_STATEMENT_TYPE,
        "subject": [{"name": run_href(summary.run_id, "MANIFEST.json"), "digest": {"sha256": summary.manifest_sha256}}],
        "predicateType": TEST_RESULT_PREDICATE,
        "predicate": {
            "result": intoto_result(summary.outcome, warned),
            "configuration": configuration,
            "url": f"report.html#{summary.run_id}",
            "passedTests": passed,
            "warnedTests": warned,
            "failedTests": failed,
        },
    }


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE pre-authentication encoding: what the envelope's signature covers."""
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(body), body)


def dsse_envelope(statement: dict[str, Any], signer: Signer) -> dict[str, Any]:
    body = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    signature = signer.sign(pae(DSSE_PAYLOAD_TYPE, body))
    return {
        "payloadType": DSSE_PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": signer.key_id, "sig": base64.b64encode(signature).decode()}],
    }
