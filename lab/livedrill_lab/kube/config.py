"""How the lab's virt-controller paces and models migrations."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ControllerConfig(BaseModel):
    """How the lab paces and models migrations (all durations in seconds)."""

    model_config = ConfigDict(extra="forbid")

    phase_step_s: float = Field(0.1, ge=0, description="Pause between the early phases (scheduling, target start)")
    unlimited_bandwidth_bytes_per_s: float = Field(1024**3, gt=0, description="Used when bandwidthPerMigration is 0")
    default_dirty_rate_bytes_per_s: float = Field(6 * 1024**2, ge=0)
    unschedulable_timeout_s: float = Field(300.0, gt=0, description="KubeVirt auto-cancels an unschedulable target pod")
    abort_duration_s: float = Field(0.1, ge=0)
    finished_kept_per_vmi: int = Field(5, ge=1)
    evacuation_retry_s: float = Field(2.0, ge=0)
    reconcile_interval_s: float = Field(0.05, gt=0, description="How often the controller looks for changes")
    resync_interval_s: float = Field(1.0, gt=0, description="A full pass at least this often, changes or not")
    workloads: dict[str, int] = Field(default_factory=dict, description='"ns/name" -> PID paused at stop-and-copy')
    freezes_file: Path | None = None
