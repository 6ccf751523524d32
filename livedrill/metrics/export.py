"""What the drill flow calls: export one run's metrics to every configured sink, and read KubeVirt's back."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field

from livedrill.evidence.archive import Archive
from livedrill.metrics.config import MetricsConfig
from livedrill.metrics.http import MetricsEndpointError
from livedrill.metrics.kubevirt import KubeVirtMetricsEvidence, collect_kubevirt_evidence
from livedrill.metrics.push import PushResult, push_samples
from livedrill.metrics.rundir import TIMELINE_FILE, RunInfo, RUN_FILE, samples_from_run_dir
from livedrill.outcomes import TimelineEvent, utcnow
from livedrill.specbase import VMRef

KUBEVIRT_EVIDENCE_FILE = "metrics/kubevirt-migration.json"


class SinkOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    url: str
    pushed: PushResult | None = None
    error: str | None = None
    transient: bool | None = None  # for an error: would a later re-export likely succeed


class ExportReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_dir: str
    samples: int
    sinks: list[SinkOutcome] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.sinks)


def export_run(run_dir: str | Path, config: MetricsConfig, *, client: httpx.Client | None = None) -> ExportReport:
    """Push a finished run's samples to each sink. One sink failing does not stop the others; each
    outcome is reported (re-run later with the same run directory: pushes are idempotent)."""
    samples = samples_from_run_dir(run_dir)
    report = ExportReport(run_dir=str(run_dir), samples=len(samples))
    for sink in config.push:
        try:
            pushed = push_samples(samples, sink, client=client)
        except MetricsEndpointError as exc:
            report.sinks.append(SinkOutcome(kind=sink.kind, url=sink.url, error=str(exc), transient=exc.transient))
            continue
        report.sinks.append(SinkOutcome(kind=sink.kind, url=sink.url, pushed=pushed))
    return report


def export_archive(root: str | Path, config: MetricsConfig, *, client: httpx.Client | None = None) -> list[ExportReport]:
    """Re-export every sealed run of an archive, oldest first (e.g. into a new VictoriaMetrics).

    Unsealed runs are skipped: they are in progress, or crashed and waiting for `livedrill recover`.
    """
    return [export_run(run.path, config, client=client) for run in Archive(Path(root)).runs() if run.sealed]


def drill_window(run_dir: str | Path) -> tuple[datetime, datetime]:
    """The run's window: run.json's when finished, else the first timeline event to now (a run being recorded)."""
    path = Path(run_dir)
    if (path / RUN_FILE).exists():
        run = RunInfo.model_validate_json((path / RUN_FILE).read_bytes())
        return run.started_at, run.ended_at
    times = [TimelineEvent.model_validate_json(line).at
             for line in (path / TIMELINE_FILE).read_text(encoding="utf-8").splitlines() if line.strip()] \
        if (path / TIMELINE_FILE).exists() else []
    now = utcnow()
    return (min(times) if times else now), now


def kubevirt_evidence_for_run(run_dir: str | Path, config: MetricsConfig, vms: list[VMRef],
                              *, client: httpx.Client | None = None) -> KubeVirtMetricsEvidence | None:
    """KubeVirt's migration series for the run's window, or None when no query endpoint is configured."""
    if config.kubevirt is None:
        return None
    start, end = drill_window(run_dir)
    return collect_kubevirt_evidence(config.kubevirt, vms, start, end, client=client)
