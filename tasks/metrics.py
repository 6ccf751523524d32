"""Metrics tasks: KubeVirt's migration series into the evidence before sealing; the drill's metrics
pushed to the configured stores after sealing (a refused push never changes the drill's verdict)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from livedrill.evidence.archive import Archive
from livedrill.metrics.config import MetricsConfig
from livedrill.metrics.export import KUBEVIRT_EVIDENCE_FILE, ExportReport, export_run, kubevirt_evidence_for_run
from livedrill.metrics.kubevirt import KubeVirtMetricsEvidence
from livedrill.spec import VMRef


@task(name="kubevirt-metrics-evidence", cache_policy=NO_CACHE)
def kubevirt_metrics_evidence(run_dir: str, config: MetricsConfig, vms: list[VMRef]) -> KubeVirtMetricsEvidence | None:
    """Run before seal-evidence: writes metrics/kubevirt-migration.json into the (unsealed) run and returns it."""
    evidence = kubevirt_evidence_for_run(run_dir, config, vms)
    if evidence is None:
        return None
    path = Path(run_dir)
    Archive(path.parent).find(path.name).write_json(KUBEVIRT_EVIDENCE_FILE, evidence.model_dump(mode="json"))
    for error in evidence.errors:
        get_run_logger().warning("KubeVirt metrics not in the evidence: %s", error)
    return evidence


@task(name="export-metrics", cache_policy=NO_CACHE)
def export_metrics(run_dir: str, config: MetricsConfig) -> ExportReport:
    """Run after seal-evidence (reads run.json and verdict.json). Re-running it for an old run re-exports it."""
    report = export_run(run_dir, config)
    logger = get_run_logger()
    for sink in report.sinks:
        if sink.error:
            logger.warning("metrics push to %s failed (%s): %s", sink.url,
                           "transient: re-export later" if sink.transient else "permanent", sink.error)
    return report
