"""Artifacts every run leaves in Prefect: the plan, the drill report, the probe windows, progress, the evidence link."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from prefect.cache_policies import NO_CACHE

from livedrill.deploy.approval import APPROVAL_FILE
from livedrill.deploy.report import (drill_report_markdown, plan_markdown, probe_window_rows, progress_percent,
                                     should_publish)
from livedrill.outcomes import CheckResult, Verdict
from livedrill.platforms.base import VMState
from livedrill.progress import ProgressEvent
from livedrill.spec import DrillSpec
from livedrill.stages.migrate import PROBE_REPORT_FILE

log = logging.getLogger(__name__)
# A progress bar needs no more than about one update a second; each is an API call.
PROGRESS_MIN_INTERVAL_S = 1.0


def artifact_key(kind: str, drill: str) -> str:
    """Artifact keys (lower-case, digits, dashes) group one drill's artifacts across runs in the UI."""
    return f"{kind}-{drill}"


@task(name="publish-plan", cache_policy=NO_CACHE)
def publish_plan(spec: DrillSpec, checks: list[CheckResult], before: list[VMState], dry_run: bool) -> str:
    markdown = plan_markdown(spec, checks, before, dry_run=dry_run)
    create_markdown_artifact(markdown, key=artifact_key("drill-plan", spec.name),
                             description="The plan and the pre-flight results, as the approver sees them")
    return markdown


def _load_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(drill: str, verdict: Verdict) -> None:
    """After sealing: the report, the probe windows, the link. Reads the sealed run; changes nothing in it."""
    run_dir = Path(verdict.evidence_dir) if verdict.evidence_dir else None
    probe_report = _load_json(run_dir / PROBE_REPORT_FILE) if run_dir else None
    approval = _load_json(run_dir / APPROVAL_FILE) if run_dir else None
    create_markdown_artifact(drill_report_markdown(verdict, probe_report, approval),
                             key=artifact_key("drill-report", drill), description=f"Drill verdict: {verdict.outcome.value}")
    rows = probe_window_rows(probe_report)
    if rows:
        create_table_artifact(rows, key=artifact_key("probe-windows", drill),
                              description="Probe windows: baseline, during the migration, after")
    if run_dir is not None:
        create_link_artifact(run_dir.resolve().as_uri(), link_text=f"sealed evidence {run_dir.name}",
                             key=artifact_key("sealed-evidence", drill),
                             description="The run's sealed evidence; verify with `livedrill evidence verify <dir>`")


class ProgressArtifact:
    """A progress artifact fed by the migrate stage's progress events; throttled, and never fatal to the migration."""

    def __init__(self, vm: str, warmup_s: float, cooldown_s: float, clock=time.monotonic):
        self.warmup_s, self.cooldown_s, self.clock = warmup_s, cooldown_s, clock
        self.last_percent: float | None = None
        self.last_at: float | None = None
        self.artifact_id: UUID | None = self._call(create_progress_artifact, 0.0,
                                                   description=f"live migration of {vm}")

    def __call__(self, event: ProgressEvent) -> None:
        percent = progress_percent(event, self.warmup_s, self.cooldown_s)
        now = self.clock()
        if self.artifact_id is None or percent is None \
                or not should_publish(self.last_percent, self.last_at, percent, now, PROGRESS_MIN_INTERVAL_S):
            return
        self._call(update_progress_artifact, self.artifact_id, percent)
        self.last_percent, self.last_at = percent, now

    def done(self) -> None:
        if self.artifact_id is not None and self.last_percent != 100.0:
            self._call(update_progress_artifact, self.artifact_id, 100.0)

    @staticmethod
    def _call(fn, *args, **kwargs):
        # The bar is a view: an API hiccup must not stop a migration that is moving a bank's VM.
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - cosmetic; cancellation (BaseException) still propagates
            log.warning("progress artifact not updated: %s", exc)
            return None
