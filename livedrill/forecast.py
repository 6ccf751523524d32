"""Convergence forecast: will a pre-copy live migration converge within the drill's budget, how long will it
take and what switchover pause should the change manager expect? Pure: numbers in, a record out.

The model is QEMU's pre-copy as rounds. Round 1 copies all guest memory while the guest runs; every later
round copies what the guest dirtied during the round before. After each round QEMU compares what is still
dirty with what it can send within the allowed downtime (bandwidth x downtime-limit); once it fits, it pauses
the guest and sends the rest: that copy time is the switchover pause. A guest that dirties memory as fast as
it is sent never gets there. A working-set cap W bounds the bytes dirtied per round (a guest rewriting the
same 64 MiB dirties at most 64 MiB however long the round). With copy-storage (libvirt's
VIR_MIGRATE_NON_SHARED_DISK, an NBD drive-mirror) the disks are copied first at the same bandwidth, and the
mirror keeps carrying the guest's disk writes for the rest of the migration, so memory gets what is left.

Auto-converge is QEMU's CPU throttle with its defaults (MigrationParameters in
https://www.qemu.org/docs/master/interop/qemu-qmp-ref.html: throttle-trigger-threshold 50,
cpu-throttle-initial 20, cpu-throttle-increment 10, max-cpu-throttle 99; downtime-limit 300 ms): a
round whose dirtied bytes exceed 50 % of the bytes it sent is unproductive; every second unproductive round
raises the throttle (20 %, then +10 %), and a throttle of p % leaves the guest (100 - p) % of its dirty rate.

QEMU sends a page that is all zeros as a header of a few bytes, so the first round costs the guest's touched
memory (pages holding data), not all of it: given (or measured, `touched_memory_bytes`), round 1 sends that; not
given, all memory counts and the forecast errs long, on the safe side. Before the first byte moves the platform
prepares the destination (libvirt starts its QEMU, with copy-storage its NBD export): `setup_s`, declared.
QEMU's mirror paces a disk by its virtual size (unallocated clusters count against the bandwidth as written
ones: a 128 MiB qcow2 holding 64 MiB took 4.0 s at 32 MiB/s on the lab), so disks count whole.
Not modelled: device state, compression and multifd; the bandwidth is taken as reached from the first byte.

Post-copy switches the guest to the destination after the first round and pulls the rest on demand, so it
always finishes, but a failure after the switch leaves no complete copy of the guest on either host; on
KubeVirt a post-copy failure fails the VMI (since v1.6), so it is refused for core VMs there.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from livedrill.outcomes import CheckResult, CheckStatus, Record
from livedrill.quantity import parse_quantity
from livedrill.specbase import SpecModel

GIB = 1024**3
MIB = 1024**2
QEMU_DEFAULT_DOWNTIME_MS = 300.0  # QEMU's downtime-limit when nobody sets one
THROTTLE_TRIGGER = 0.50  # throttle-trigger-threshold: dirtied > 50 % of sent in a round is unproductive
THROTTLE_INITIAL_PCT = 20  # cpu-throttle-initial
THROTTLE_INCREMENT_PCT = 10  # cpu-throttle-increment
THROTTLE_MAX_PCT = 99  # max-cpu-throttle
WARN_MARGIN = 0.20  # a forecast using more than 80 % of the budget is a warning: the rate may be higher on the night
MEASURE = "measure"


# ---------------------------------------------------------------- the spec's `forecast:` section


def _byte_figure(value: object, measurable: bool) -> object:
    """A number or a Kubernetes quantity ("8Mi") as bytes; anything else is left to the field's type."""
    if isinstance(value, str) and not (measurable and value == MEASURE):
        try:
            return parse_quantity(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a byte figure: give bytes as a number or a quantity such as 8Mi"
                             + (' or "measure"' if measurable else "")) from None
    return value


class ForecastConfig(SpecModel):
    """Inputs of the pre-flight's convergence forecast. Byte figures take numbers or quantities (8Mi, 1Gi)."""

    dirty_rate_bytes_per_s: float | Literal["measure"] | None = Field(
        None, description='Bytes of guest memory the workload dirties per second, or "measure" (the platform '
                          'measures it during pre-flight, where it can); null: unknown, the forecast warns')
    working_set_bytes: float | None = Field(
        None, gt=0, description="The memory the workload keeps rewriting: no round dirties more than this")
    bandwidth_bytes_per_s: float | None = Field(
        None, gt=0, description="What the migration link carries for this migration; the platform's own limit "
                                "(libvirt platform.bandwidth_mib_s, KubeVirt bandwidthPerMigration) caps it")
    allowed_downtime_ms: float | None = Field(
        None, gt=0, description="Switchover pause the hypervisor may take, when the platform sets none "
                                "(default: QEMU's downtime-limit, 300 ms)")
    disk_write_rate_bytes_per_s: float = Field(
        0.0, ge=0, description="With copy-storage: bytes per second the guest writes to its disks")
    touched_memory_bytes: float | Literal["measure"] | None = Field(
        None, description='Guest memory holding data (pages not all zero), which is what the first round sends, or '
                          '"measure" (libvirt samples touched_sample_pages of the running guest\'s pages during '
                          'pre-flight); null: all memory counts, the forecast errs long')
    touched_sample_pages: int = Field(
        256, ge=16, le=4096, description='With touched_memory_bytes "measure": how many 4 KiB pages are sampled '
                                         '(about 4 ms each on libvirt)')
    setup_s: float = Field(
        0.0, ge=0, description="Seconds from the migrate call to the first byte sent: the destination host starting "
                               "its QEMU and the handshake (and the NBD export with copy-storage)")
    measure_window_s: int = Field(
        5, ge=1, le=60, description='With "measure": how long the platform samples the dirty rate (QEMU accepts up to 60 s)')
    measure_windows: int = Field(
        3, ge=1, le=10, description='With "measure": how many windows are measured one after another; the highest '
                                    'counts (QEMU samples 512 pages per GiB: one window of a small guest is ±15 %)')
    max_rounds: int = Field(1000, ge=1, description="Past this many pre-copy rounds the forecast says it does not converge")

    @field_validator("dirty_rate_bytes_per_s", "working_set_bytes", "bandwidth_bytes_per_s",
                     "disk_write_rate_bytes_per_s", "touched_memory_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: object, info: ValidationInfo) -> object:
        return _byte_figure(value, measurable=info.field_name in ("dirty_rate_bytes_per_s", "touched_memory_bytes"))

    @field_validator("dirty_rate_bytes_per_s", "touched_memory_bytes")
    @classmethod
    def _not_negative(cls, value: float | str | None, info: ValidationInfo) -> float | str | None:
        if isinstance(value, float) and value < 0:
            raise ValueError("a dirty rate is 0 or more bytes per second" if info.field_name == "dirty_rate_bytes_per_s"
                             else "touched memory is 0 or more bytes")
        return value


# ---------------------------------------------------------------- what the platform configures for one VM


class MigrationLimits(Record):
    """What the platform will migrate this VM with, as its pre-flight read it (None: the platform sets none)."""

    bandwidth_bytes_per_s: float | None = None
    max_downtime_ms: float | None = None
    auto_converge: bool = False
    post_copy: bool = False
    disk_bytes: int = Field(0, ge=0, description="Bytes of disk the migration copies (copy-storage), 0 with shared storage")
    post_copy_fails_vm: bool = Field(
        False, description="A post-copy failure loses the VM on this platform (KubeVirt since v1.6) and it is core-tier")
    source: str = Field(description="Where these came from, e.g. 'platform.flags' or 'MigrationPolicy fast'")


class DirtyRateReading(Record):
    """What a platform's dirty-rate meter found for one VM: a figure, or why there is none (never a guess)."""

    bytes_per_s: float | None = Field(None, ge=0)
    source: str = Field(description="Where the figure was read, e.g. 'QEMU calc-dirty-rate on host-a over 5 s'")
    unknown: str | None = Field(None, description="Why there is no figure, naming the cause; None when measured")


def busiest_reading(readings: list[DirtyRateReading]) -> DirtyRateReading:
    """Several windows' readings as the forecast's one: the highest measured figure, since a rate read low makes
    a non-converging migration look convergent (a 32 MiB/s guest read 25-37 MiB/s in single 2 s windows on the
    lab), and the forecast errs on the safe side; unknown only when no window measured."""
    measured = [r for r in readings if r.bytes_per_s is not None]
    if not measured:
        return readings[-1] if readings else DirtyRateReading(source="no meter", unknown="nothing measured it")
    top = max(measured, key=lambda r: r.bytes_per_s or 0.0)
    if len(readings) == 1:
        return top
    figures = ", ".join("-" if r.bytes_per_s is None else f"{r.bytes_per_s / MIB:.0f}" for r in readings)
    return DirtyRateReading(bytes_per_s=top.bytes_per_s,
                            source=f"the highest of {len(readings)} windows ({figures} MiB/s) of {top.source}")


# ---------------------------------------------------------------- the model


class ForecastInputs(Record):
    memory_bytes: float = Field(gt=0)
    dirty_rate_bytes_per_s: float = Field(ge=0)
    working_set_bytes: float | None = Field(None, gt=0)
    bandwidth_bytes_per_s: float = Field(gt=0)
    allowed_downtime_ms: float = Field(gt=0)
    budget_s: float = Field(gt=0, description="The drill's migration deadline (livedrill.spec.migration_deadline_s)")
    disk_bytes: float = Field(0.0, ge=0)
    disk_write_rate_bytes_per_s: float = Field(0.0, ge=0)
    touched_memory_bytes: float | None = Field(None, ge=0, description="Memory holding data; None: all of it")
    setup_s: float = Field(0.0, ge=0)
    max_rounds: int = Field(1000, ge=1)


class Ending(str, enum.Enum):
    CONVERGED = "converged"  # the rest fitted in the allowed downtime within the budget
    NO_PROGRESS = "no-progress"  # a round dirtied as much as it sent: the remainder never shrinks
    OVER_BUDGET = "over-budget"  # still converging when the drill's deadline passes
    MAX_ROUNDS = "max-rounds"
    DISK_WRITES = "disk-writes-outpace-bandwidth"  # the drive-mirror never catches up


class Precopy(Record):
    """One run of the model. Times in seconds from the start of the migration; None where it does not finish."""

    converges: bool
    ending: Ending
    reason: str
    rounds: int  # live rounds (memory passes) before the switchover, or until it gave up
    sent_bytes: float  # memory and disk sent, until the switchover's end or the drill's deadline
    disk_copy_s: float
    migration_s: float | None  # start to the guest running on the destination
    switchover_pause_ms: float | None
    final_throttle_pct: int = 0  # auto-converge's CPU throttle at the end (0: none)
    budget_s: float
    margin_s: float | None  # budget - migration_s
    margin_fraction: float | None  # margin_s / budget_s


def precopy(inputs: ForecastInputs, auto_converge: bool = False) -> Precopy:
    """Pre-copy round by round; with `auto_converge`, QEMU's CPU throttle slows the guest's dirtying."""
    p = inputs
    budget = p.budget_s
    disk_write = p.disk_write_rate_bytes_per_s if p.disk_bytes else 0.0
    memory_bw = p.bandwidth_bytes_per_s - disk_write
    if memory_bw <= 0:
        return _gave_up(p, Ending.DISK_WRITES, 0, 0.0, 0,
                        f"the guest writes {_rate(disk_write)} to its disks, the link carries {_rate(p.bandwidth_bytes_per_s)}: "
                        "the disk mirror never catches up")
    disk_s = p.disk_bytes / memory_bw
    if p.setup_s + disk_s > budget:
        return _gave_up(p, Ending.OVER_BUDGET, 0, budget * p.bandwidth_bytes_per_s, 0,
                        f"copying the disks alone takes {disk_s:.0f} s, the drill's budget is {budget:.0f} s", disk_s)
    elapsed, sent = p.setup_s + disk_s, disk_s * p.bandwidth_bytes_per_s
    cap = min(p.memory_bytes, p.working_set_bytes or p.memory_bytes)
    threshold = memory_bw * p.allowed_downtime_ms / 1000.0  # what fits in the allowed pause
    remaining, throttle, unproductive = first_round_bytes(p), 0, 0
    for rounds in range(1, p.max_rounds + 1):
        copy_s = remaining / memory_bw
        if elapsed + copy_s > budget:
            return _gave_up(p, Ending.OVER_BUDGET, rounds, sent + (budget - elapsed) * p.bandwidth_bytes_per_s,
                            throttle, f"round {rounds} would end after the drill's {budget:.0f} s budget", disk_s)
        elapsed += copy_s
        sent += remaining + copy_s * disk_write
        throttled = throttle  # the throttle this round ran under
        dirtied = min(cap, p.dirty_rate_bytes_per_s * (1 - throttled / 100) * copy_s)
        if dirtied <= threshold:
            pause_s = dirtied / memory_bw
            total = elapsed + pause_s
            if total > budget:
                return _gave_up(p, Ending.OVER_BUDGET, rounds, sent, throttle,
                                f"the switchover would end at {total:.1f} s, after the drill's {budget:.0f} s budget", disk_s)
            margin = budget - total
            return Precopy(converges=True, ending=Ending.CONVERGED, rounds=rounds, sent_bytes=sent + dirtied,
                           disk_copy_s=disk_s, migration_s=total, switchover_pause_ms=pause_s * 1000.0,
                           final_throttle_pct=throttle, budget_s=budget, margin_s=margin, margin_fraction=margin / budget,
                           reason=f"converges after {rounds} round(s) in {total:.1f} s with a {pause_s * 1000:.0f} ms pause")
        if auto_converge and dirtied > THROTTLE_TRIGGER * remaining:
            unproductive += 1
            if unproductive == 2:
                unproductive = 0
                throttle = min(THROTTLE_MAX_PCT, throttle + THROTTLE_INCREMENT_PCT if throttle else THROTTLE_INITIAL_PCT)
        if dirtied >= remaining and (not auto_converge or throttled == THROTTLE_MAX_PCT):
            return _gave_up(p, Ending.NO_PROGRESS, rounds, sent, throttled,
                            f"round {rounds} dirtied {dirtied / MIB:.0f} MiB while sending {remaining / MIB:.0f} MiB "
                            f"(dirty rate {_rate(p.dirty_rate_bytes_per_s)}"
                            + (f", guest CPU throttled by {throttled} %" if throttled else "")
                            + f" vs {_rate(memory_bw)} for memory): the remainder never shrinks", disk_s)
        remaining = dirtied
    return _gave_up(p, Ending.MAX_ROUNDS, p.max_rounds, sent, throttle,
                    f"still {remaining / MIB:.0f} MiB dirty after {p.max_rounds} rounds", disk_s)


def first_round_bytes(p: ForecastInputs) -> float:
    """What round 1 sends: the touched memory where known (zero pages go as headers), else all of it."""
    return p.memory_bytes if p.touched_memory_bytes is None else min(p.memory_bytes, p.touched_memory_bytes)


def _gave_up(p: ForecastInputs, ending: Ending, rounds: int, sent: float, throttle: int, reason: str,
             disk_s: float = 0.0) -> Precopy:
    return Precopy(converges=False, ending=ending, reason=reason, rounds=rounds, sent_bytes=sent, disk_copy_s=disk_s,
                   migration_s=None, switchover_pause_ms=None, final_throttle_pct=throttle, budget_s=p.budget_s,
                   margin_s=None, margin_fraction=None)


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / MIB:.1f} MiB/s"


class Postcopy(Record):
    """Switching to post-copy after the first round: the destination pulls what is still dirty on demand."""

    enabled: bool  # the platform is configured to allow it
    refused: str | None  # why the drill must not rely on it, or None
    migration_s: float | None  # the migration's end if it switches after round 1 (None: cannot, see precopy)


def postcopy(inputs: ForecastInputs, limits: MigrationLimits) -> Postcopy:
    refused = ("a post-copy failure fails the VMI on KubeVirt (since v1.6): never for a core VM"
               if limits.post_copy_fails_vm else None)
    memory_bw = inputs.bandwidth_bytes_per_s - (inputs.disk_write_rate_bytes_per_s if inputs.disk_bytes else 0.0)
    if memory_bw <= 0:  # the disks never finish copying, whatever happens to memory
        return Postcopy(enabled=limits.post_copy, refused=refused, migration_s=None)
    first_round = first_round_bytes(inputs)
    dirtied = min(inputs.memory_bytes, inputs.working_set_bytes or inputs.memory_bytes,
                  inputs.dirty_rate_bytes_per_s * first_round / memory_bw)
    return Postcopy(enabled=limits.post_copy, refused=refused,
                    migration_s=inputs.setup_s + (inputs.disk_bytes + first_round + dirtied) / memory_bw)


class Forecast(Record):
    """The forecast of one VM's migration: the mode the platform will run, and what the others would change."""

    inputs: ForecastInputs
    limits: MigrationLimits
    precopy: Precopy
    auto_converge: Precopy  # the same migration with QEMU's auto-converge throttle
    postcopy: Postcopy
    expected: Precopy  # what the platform as configured will do: precopy, or auto_converge when it is enabled


def forecast(inputs: ForecastInputs, limits: MigrationLimits) -> Forecast:
    plain = precopy(inputs)
    throttled = precopy(inputs, auto_converge=True)
    return Forecast(inputs=inputs, limits=limits, precopy=plain, auto_converge=throttled,
                    postcopy=postcopy(inputs, limits), expected=throttled if limits.auto_converge else plain)


# ---------------------------------------------------------------- the pre-flight check


def resolve_inputs(config: ForecastConfig, limits: MigrationLimits, memory_bytes: float, budget_s: float,
                   measured: DirtyRateReading | None,
                   measured_touched_bytes: float | None = None) -> tuple[ForecastInputs | None, list[str]]:
    """The model's inputs from the spec and the platform, or None with what is unknown (never a guessed figure).

    `measured` is the platform's reading when the spec says "measure" (None: nobody measured). Bandwidth: the
    lower of the spec's link figure and the platform's cap, whichever are set. Downtime: the platform's limit,
    else the spec's, else QEMU's default. Touched memory: declared or measured, else all memory (the safe side,
    so not an unknown)."""
    unknown = []
    if config.dirty_rate_bytes_per_s == MEASURE:
        rate = measured.bytes_per_s if measured is not None else None
        if rate is None:
            why = measured.unknown if measured is not None and measured.unknown else "nothing measured it"
            unknown.append(f"the dirty rate (could not measure it: {why})")
    else:
        rate = config.dirty_rate_bytes_per_s
        if rate is None:
            unknown.append("the dirty rate (forecast.dirty_rate_bytes_per_s is not set)")
    bandwidths = [b for b in (config.bandwidth_bytes_per_s, limits.bandwidth_bytes_per_s) if b]
    if not bandwidths:
        unknown.append("the bandwidth (forecast.bandwidth_bytes_per_s is not set and the platform sets no limit)")
    if memory_bytes <= 0:
        unknown.append("the guest memory")
    if unknown:
        return None, unknown
    downtime = limits.max_downtime_ms or config.allowed_downtime_ms or QEMU_DEFAULT_DOWNTIME_MS
    return ForecastInputs(
        memory_bytes=memory_bytes, dirty_rate_bytes_per_s=float(rate), working_set_bytes=config.working_set_bytes,
        bandwidth_bytes_per_s=min(bandwidths), allowed_downtime_ms=downtime, budget_s=budget_s,
        disk_bytes=limits.disk_bytes, disk_write_rate_bytes_per_s=config.disk_write_rate_bytes_per_s,
        touched_memory_bytes=measured_touched_bytes if config.touched_memory_bytes == MEASURE
        else config.touched_memory_bytes, setup_s=config.setup_s, max_rounds=config.max_rounds), []


CHECK = "convergence-forecast"


def convergence_check(config: ForecastConfig | None, limits: MigrationLimits | None, memory_bytes: float,
                      budget_s: float, measured: DirtyRateReading | None, slo_downtime_ms: float,
                      subject: str, measured_touched_bytes: float | None = None) -> CheckResult:
    """FAIL when the migration cannot converge within the drill's budget, WARN within 20 % of it (or when only
    post-copy would finish it, the predicted pause alone breaks the SLO's downtime, or an input is unknown),
    PASS otherwise; the figures go into the evidence."""
    if config is None:
        return CheckResult(name=CHECK, status=CheckStatus.NOT_APPLICABLE, subject=subject,
                           message="no forecast section in the spec")
    if limits is None:
        return CheckResult(name=CHECK, status=CheckStatus.WARN, subject=subject,
                           message="unknown: the platform reported no migration settings for this VM")
    inputs, unknown = resolve_inputs(config, limits, memory_bytes, budget_s, measured, measured_touched_bytes)
    reading = {"dirty_rate_reading": measured.model_dump(mode="json")} if measured is not None else {}
    if inputs is None:
        return CheckResult(name=CHECK, status=CheckStatus.WARN, subject=subject,
                           message=f"unknown: {'; '.join(unknown)}", remedy="declare the missing figures under forecast:",
                           evidence={"unknown": unknown, "limits": limits.model_dump(mode="json"), **reading})
    result = forecast(inputs, limits)
    evidence = {**result.model_dump(mode="json"), **reading}
    figures = (f"{inputs.memory_bytes / GIB:.2f} GiB at {_rate(inputs.dirty_rate_bytes_per_s)} dirtied, "
               f"{_rate(inputs.bandwidth_bytes_per_s)} link, {inputs.allowed_downtime_ms:g} ms allowed pause"
               + (f", {inputs.disk_bytes / GIB:.2f} GiB of disk" if inputs.disk_bytes else "")
               + (f", {inputs.touched_memory_bytes / MIB:.0f} MiB of memory holding data"
                  if inputs.touched_memory_bytes is not None else
                  ", all memory counted (touched memory not measured)" if config.touched_memory_bytes == MEASURE else ""))
    mode = "auto-converge" if limits.auto_converge else "pre-copy"
    expected = result.expected
    if expected.converges:
        assert expected.margin_fraction is not None and expected.switchover_pause_ms is not None
        concerns, remedies = [], []
        if expected.margin_fraction < WARN_MARGIN:
            concerns.append(f"less than {WARN_MARGIN:.0%} of the budget to spare")
            remedies.append("raise budgets.migration_timeout_per_gib_s or lower the guest's load during the drill")
        if expected.switchover_pause_ms > slo_downtime_ms:
            # The hypervisor's pause is the least outage the probes can see (the network and the guest add to it).
            concerns.append(f"the pause alone exceeds slo.max_downtime_ms {slo_downtime_ms:g}")
            remedies.append("lower the platform's allowed downtime or the guest's load")
        return CheckResult(
            name=CHECK, status=CheckStatus.WARN if concerns else CheckStatus.PASS, subject=subject, evidence=evidence,
            message=f"{mode} {expected.reason}; {expected.margin_fraction:.0%} of the {budget_s:g} s budget left ({figures})"
                    + "".join(f"; {c}" for c in concerns),
            remedy="; ".join(remedies) or None)
    hint = _what_would_help(result)
    if result.postcopy.enabled and result.postcopy.refused is None and result.postcopy.migration_s is not None \
            and result.postcopy.migration_s <= budget_s:
        return CheckResult(
            name=CHECK, status=CheckStatus.WARN, subject=subject, evidence=evidence,
            message=f"{mode} does not converge ({expected.reason}); only post-copy would finish, in "
                    f"{result.postcopy.migration_s:.1f} s, and a failure after its switch leaves no whole guest ({figures})",
            remedy=hint)
    refused = f"; post-copy refused: {result.postcopy.refused}" if result.postcopy.enabled and result.postcopy.refused else ""
    return CheckResult(name=CHECK, status=CheckStatus.FAIL, subject=subject, evidence=evidence,
                       message=f"{mode} will not converge within the drill's budget: {expected.reason}{refused} ({figures})",
                       remedy=hint)


def _what_would_help(result: Forecast) -> str:
    ideas = []
    if not result.limits.auto_converge and result.auto_converge.converges:
        ideas.append(f"auto-converge would finish in {result.auto_converge.migration_s:.1f} s "
                     f"(guest CPU throttled by up to {result.auto_converge.final_throttle_pct} %)")
    if not result.limits.post_copy and result.postcopy.refused is None and result.postcopy.migration_s is not None:
        ideas.append(f"post-copy would finish in {result.postcopy.migration_s:.1f} s")
    ideas.append("more bandwidth, a quieter guest during the drill, or a longer budget")
    return "; ".join(ideas)


# ---------------------------------------------------------------- the forecast beside what happened


class MigrationFigures(Record):
    """What the platform measured of one finished migration, to set beside its forecast (None: not reported)."""

    migration_s: float  # start of the migration to the guest running on the destination
    switchover_pause_ms: float | None = None
    data_bytes: float | None = None
    memory_rounds: int | None = None  # memory passes, the last one included where the platform counts it
    source: str  # where the figures were read, for the auditor


# The accuracy the forecast is built for: migration time within 25 % of the prediction (the convergence
# benchmark's target). A forecast further off is a warning, never a failed drill: the planner's estimate for
# this VM needs a fresh dirty rate or bandwidth.
ACCURACY_TOLERANCE = 0.25
ACCURACY_CHECK = "forecast-accuracy"


def relative_error(predicted: float | None, actual: float | None) -> float | None:
    """(actual - predicted) / predicted; None when either is unknown or the prediction is zero."""
    if predicted is None or actual is None or predicted == 0:
        return None
    return (actual - predicted) / predicted


def accuracy_check(result: Forecast, figures: MigrationFigures, subject: str) -> CheckResult:
    """The pre-flight's forecast beside the migration as the platform measured it, with the error of each figure."""
    expected = result.expected
    pairs = {"migration_s": (expected.migration_s, figures.migration_s),
             "switchover_pause_ms": (expected.switchover_pause_ms, figures.switchover_pause_ms),
             "data_bytes": (expected.sent_bytes if expected.converges else None, figures.data_bytes),
             "memory_rounds": (expected.rounds if expected.converges else None, figures.memory_rounds)}
    evidence = {"forecast": {k: p for k, (p, _) in pairs.items()}, "actual": figures.model_dump(mode="json"),
                "error": {k: relative_error(p, a) for k, (p, a) in pairs.items()}, "tolerance": ACCURACY_TOLERANCE}
    actual = f"finished in {figures.migration_s:.1f} s"
    if figures.switchover_pause_ms is not None:
        actual += f", {figures.switchover_pause_ms:g} ms pause"
    if figures.data_bytes is not None:
        actual += f", {figures.data_bytes / MIB:.0f} MiB sent"
    if figures.memory_rounds is not None:
        actual += f", {figures.memory_rounds} memory pass(es)"
    if expected.migration_s is None:
        return CheckResult(name=ACCURACY_CHECK, status=CheckStatus.WARN, subject=subject, evidence=evidence,
                           message=f"forecast said it would not converge ({expected.reason}); it {actual} ({figures.source})",
                           remedy="measure the dirty rate and bandwidth again: the forecast's inputs overstate the load")
    error = relative_error(expected.migration_s, figures.migration_s)
    assert error is not None
    predicted = f"forecast {expected.migration_s:.1f} s"
    if expected.switchover_pause_ms is not None:
        predicted += f", {expected.switchover_pause_ms:.0f} ms pause"
    predicted += f", {expected.sent_bytes / MIB:.0f} MiB, {expected.rounds} live round(s)"
    within = abs(error) <= ACCURACY_TOLERANCE
    return CheckResult(
        name=ACCURACY_CHECK, status=CheckStatus.PASS if within else CheckStatus.WARN, subject=subject, evidence=evidence,
        message=f"{actual}; {predicted}: time {error:+.0%} ({'within' if within else 'outside'} "
                f"±{ACCURACY_TOLERANCE:.0%}; {figures.source})",
        remedy=None if within else "refresh this VM's forecast inputs (dirty rate, bandwidth) before the next window")
