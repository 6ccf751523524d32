"""Which Prefect flow run made an evidence run: `prefect-run.json` in the run, sealed with the rest.

A programme window's parent flow starts each drill as a run of a deployment, on whichever worker takes it; it
finds that drill's evidence by this link, so that it judges the drill from what was sealed (never from the
state Prefect reports) and can recover a drill whose worker died, and an auditor can go from the evidence
to the run in Prefect's UI and back.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pydantic import AwareDatetime

from livedrill.evidence.archive import Archive, EvidenceRun
from livedrill.evidence.manifest import run_started_at
from livedrill.outcomes import Record

PREFECT_RUN_FILE = "prefect-run.json"
# Run ids start with their UTC creation time; a drill's run is created after its flow run, give or take
# the clocks of the two hosts (the worker's and the parent's).
CLOCK_SKEW = timedelta(minutes=5)


class PrefectRunLink(Record):
    flow_run_id: str
    flow_run_name: str | None = None
    deployment: str | None = None
    parent_flow_run_id: str | None = None


def record_run_link(run: EvidenceRun, link: PrefectRunLink) -> None:
    run.write_json(PREFECT_RUN_FILE, link.model_dump(mode="json"))


def read_run_link(run: EvidenceRun) -> PrefectRunLink | None:
    try:
        return PrefectRunLink.model_validate(json.loads((run.path / PREFECT_RUN_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def find_run_of(archive_dir: Path, flow_run_id: str, created_after: AwareDatetime) -> EvidenceRun | None:
    """The evidence run the flow run made, looking only at runs created since `created_after` (less the skew)."""
    root = Path(archive_dir)
    if not root.is_dir():
        return None
    oldest = created_after - CLOCK_SKEW
    for run in reversed(Archive(root).runs()):  # newest first
        created = run_started_at(run.run_id)
        if created is not None and created < oldest:
            break
        link = read_run_link(run)
        if link is not None and link.flow_run_id == flow_run_id:
            return run
    return None
