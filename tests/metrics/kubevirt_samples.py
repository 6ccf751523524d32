"""KubeVirt's migration series as virt-controller and virt-handler would have exposed them during the
sample drills (KubeVirt cannot run here), scraped every 15 s around each drill's migration.

Label sets follow KubeVirt: start/end time by node, namespace, name, migration_name (+ status
"succeeded"/"failed" on the end time); the phase-transition histogram by namespace, vmi, phase;
virt-handler's transfer gauges by node, namespace, name; the in-flight gauges carry no labels.
"""

from __future__ import annotations

from livedrill.metrics.samples import Sample
from tests.metrics.sample_runs import SampleDrill

SCRAPE_S = 15
BEFORE_S = 120
AFTER_S = 180
BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
MEMORY_BYTES = 8 * 2**30
TRANSFER_RATE = 64 * 2**20
SCHEDULING_PHASES = ("Scheduling", "Scheduled", "PreparingTarget", "TargetReady")


def window(drill: SampleDrill) -> tuple[int, int]:
    """Scrape times (unix seconds, on the 15 s grid) around one drill's migration."""
    start = int((drill.created_at.timestamp() - BEFORE_S) // SCRAPE_S * SCRAPE_S)
    end = int(-(-(drill.ended_at.timestamp() + AFTER_S) // SCRAPE_S) * SCRAPE_S)
    return start, end


def phase_at(drill: SampleDrill, t: float) -> str | None:
    offset = t - drill.created_at.timestamp()
    current = None
    for phase, at in drill.phases:
        if at <= offset:
            current = phase
    return current


def migration_name(index: int) -> str:
    return f"kubevirt-drill-{index}"


def in_flight(drill: SampleDrill, t: float) -> dict[str, float]:
    phase = phase_at(drill, t)
    return {"pending": float(phase == "Pending"), "scheduling": float(phase in SCHEDULING_PHASES),
            "running": float(phase == "Running")}


def data_remaining(drill: SampleDrill, t: float) -> float:
    phases = dict(drill.phases)
    start, end = phases["Running"], drill.phases[-1][1]
    offset = t - drill.created_at.timestamp()
    if not start <= offset < end:
        return 0.0
    return float(round(MEMORY_BYTES * (1 - (offset - start) / (end - start))))


def transfer_rate(drill: SampleDrill, t: float) -> float:
    return float(TRANSFER_RATE) if phase_at(drill, t) == "Running" else 0.0


def kubevirt_samples(drills: list[SampleDrill]) -> list[Sample]:
    """Series for the drills given (one cluster, one VM), in time order."""
    phases_seen = sorted({phase for d in drills for phase, _ in d.phases})
    observations: list[tuple[float, str, float]] = []  # (when, phase, seconds after creation)
    for d in drills:
        observations += [(d.created_at.timestamp() + at, phase, at) for phase, at in d.phases]
    samples: list[Sample] = []
    for index, d in enumerate(drills):
        ns, name = "banking", "banking-core-vm"
        created, terminal = d.created_at.timestamp(), d.created_at.timestamp() + d.phases[-1][1]
        status = "succeeded" if d.phases[-1][0] == "Succeeded" and not d.cancelled else "failed"
        start, end = window(d)
        for t in range(start, end + 1, SCRAPE_S):
            ms = t * 1000

            def add(metric: str, value: float, **labels: str) -> None:
                samples.append(Sample(name=metric, labels=labels, value=value, timestamp_ms=ms))

            node = d.target if t >= terminal else d.source
            if t >= created:
                add("kubevirt_vmi_migration_start_time_seconds", float(int(created)), node=node, namespace=ns, name=name,
                    migration_name=migration_name(index))
            if t >= terminal:
                add("kubevirt_vmi_migration_end_time_seconds", float(int(terminal)), node=node, namespace=ns, name=name,
                    migration_name=migration_name(index), status=status)
            for phase_name, value in in_flight(d, t).items():
                add(f"kubevirt_vmi_migrations_in_{phase_name}_phase", value)
            add("kubevirt_vmi_migration_data_remaining_bytes", data_remaining(d, t), node=d.source, namespace=ns, name=name)
            add("kubevirt_vmi_migration_memory_transfer_rate_bytes", transfer_rate(d, t), node=d.source, namespace=ns, name=name)
            for phase in phases_seen:
                seen = [at for when, p, at in observations if p == phase and when <= t]
                for le in BUCKETS:
                    add("kubevirt_vmi_migration_phase_transition_time_from_creation_seconds_bucket",
                        float(sum(at <= le for at in seen)), namespace=ns, vmi=name, phase=phase, le=f"{le:g}")
                add("kubevirt_vmi_migration_phase_transition_time_from_creation_seconds_bucket",
                    float(len(seen)), namespace=ns, vmi=name, phase=phase, le="+Inf")
                add("kubevirt_vmi_migration_phase_transition_time_from_creation_seconds_count", float(len(seen)),
                    namespace=ns, vmi=name, phase=phase)
                add("kubevirt_vmi_migration_phase_transition_time_from_creation_seconds_sum", float(sum(seen)),
                    namespace=ns, vmi=name, phase=phase)
    return samples


def p95_in_bucket(seconds: float) -> float:
    """Prometheus' histogram_quantile(0.95) of a single observation: linear within its bucket."""
    lower = 0.0
    for le in BUCKETS:
        if seconds <= le:
            return lower + (le - lower) * 0.95
        lower = le
    return BUCKETS[-1]

