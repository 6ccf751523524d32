"""Metric samples as records, and the catalogue of every metric livedrill exports (name, type, help)."""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict, field_validator

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Sample(BaseModel):
    """One value of one series, stamped with when the drill measured it (milliseconds since the epoch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    labels: dict[str, str]
    value: float
    timestamp_ms: int

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _METRIC_NAME.match(v):
            raise ValueError(f"{v!r} is not a Prometheus metric name")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a usable label name")
        return v

    def series_key(self) -> tuple:
        return (self.name, tuple(sorted(self.labels.items())))


# name -> (type, help). The exporter emits only these; the dashboards query only these and KubeVirt's.
CATALOGUE: dict[str, tuple[str, str]] = {
    "livedrill_drill_result": ("gauge", "1 when the drill PASSED, 0 when it FAILED or ended in ERROR (label outcome)"),
    "livedrill_drill_end_time_seconds": ("gauge", "When the drill ended, Unix seconds"),
    "livedrill_drill_duration_seconds": ("gauge", "From the drill's start to its verdict"),
    "livedrill_drill_observed_downtime_seconds": ("gauge", "Longest gap between successful probes over all probes (the verdict's observed downtime)"),
    "livedrill_slo_max_downtime_seconds": ("gauge", "The drill's SLO for the longest gap between successful probes"),
    "livedrill_slo_p99_latency_seconds": ("gauge", "The drill's SLO for p99 probe latency outside stop-and-copy"),
    "livedrill_rollback_actions": ("gauge", "Compensations of the drill by final state (done and failed ones were run)"),
    "livedrill_migration_succeeded": ("gauge", "1 when the VM's migration reached Succeeded and was not cancelled"),
    "livedrill_migration_duration_seconds": ("gauge", "From the first observed migration phase to the terminal one"),
    "livedrill_migration_phase_duration_seconds": ("gauge", "Time the migration spent in each phase, as the drill observed it"),
    "livedrill_migration_phase_start_offset_seconds": ("gauge", "When each phase was first observed, seconds after the migration was created"),
    "livedrill_probe_latency_quantile_seconds": ("gauge", "Probe latency quantile per window, exact from the probe report (quantile 1 is the maximum)"),
    "livedrill_probe_latency_seconds": ("histogram", "Latency of successful probes per window"),
    "livedrill_probe_requests": ("gauge", "Probe requests per window and result"),
    "livedrill_probe_failures": ("gauge", "Failed probe requests by failure kind"),
    "livedrill_probe_longest_gap_seconds": ("gauge", "Longest gap between successes of one probe (a transaction counts from its acknowledged write)"),
    "livedrill_probe_longest_stall_seconds": ("gauge", "Longest wait of one probe's request in flight, TCP retransmissions included, stamped when it ended"),
    "livedrill_probe_abandoned": ("gauge", "Hunters given up during an outage: fresh connections whose handshake was lost (not failures)"),
    "livedrill_probe_gap_seconds": ("gauge", "Each gap above the probe's threshold, stamped when it closed"),
    "livedrill_probe_gaps_above_threshold": ("gauge", "How many gaps exceeded the probe's gap threshold"),
    "livedrill_transactions_failed": ("gauge", "Transaction probes whose write or read-back failed"),
    "livedrill_transactions_lost": ("gauge", "Acknowledged transactions not found at reconciliation"),
    "livedrill_transactions_duplicated": ("gauge", "Acknowledged transactions posted more than once"),
    "livedrill_transactions_unverifiable": ("gauge", "Acknowledged transactions that could not be read back"),
}


HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def family_of(name: str) -> str:
    """The metric family a sample belongs to: a histogram's _bucket/_count/_sum samples share its name."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and CATALOGUE.get(base, ("",))[0] == "histogram":
            return base
    return name


def format_value(value: float) -> str:
    """Text-format number: integers without a decimal point, others in full precision, NaN/±Inf spelled out."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
