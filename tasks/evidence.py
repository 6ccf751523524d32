"""Evidence tasks: open the run's evidence directory first, seal it last (always)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run

from pathlib import Path

from livedrill.decisions import DrillFacts
from livedrill.deploy.runlink import PrefectRunLink, record_run_link
from livedrill.evidence.export import export_quarter
from livedrill.evidence.keys import signer_from_env
from livedrill.outcomes import Verdict, utcnow
from livedrill.spec import DrillSpec
from livedrill.stages.finish import finish
from livedrill.stages.session import DrillSession
from tasks.terminal import announce


@task(name="open-evidence", cache_policy=NO_CACHE)
def open_evidence(spec: DrillSpec, spec_text: str | None = None) -> tuple[str, str]:
    """Creates the run directory (marked UNSEALED) holding the spec as run; returns (run_dir, started_at)."""
    started_at = utcnow().isoformat()
    session = DrillSession.create(spec, spec_text)
    if flow_run.id:  # the run in Prefect that made this evidence (a programme window finds its drills by it)
        record_run_link(session.run, PrefectRunLink(
            flow_run_id=str(flow_run.id), flow_run_name=flow_run.name, deployment=deployment.name,
            parent_flow_run_id=str(flow_run.root_flow_run_id) if flow_run.root_flow_run_id != flow_run.id else None))
    return str(session.run.path), started_at


@task(name="seal-evidence", cache_policy=NO_CACHE)
def seal_evidence(run_dir: str, facts: DrillFacts, started_at: str) -> Verdict:
    announce("evidence", "verdict and seal")
    return finish(DrillSession.reopen(run_dir), facts, started_at)


@task(name="export-bundle", cache_policy=NO_CACHE)
def export_bundle(archive: str, quarter: str, out: str) -> dict:
    """Verify the archive and write the quarter's auditor bundle; refuses if anything fails verification."""
    result = export_quarter(Path(archive), quarter, Path(out), signer=signer_from_env())
    return result.model_dump(mode="json")
