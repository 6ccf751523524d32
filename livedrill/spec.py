"""Drill specs: pydantic models loaded from YAML, with every problem reported by field path and line."""

from __future__ import annotations

import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from livedrill.evidence.store_config import ObjectStoreConfig
from livedrill.forecast import ForecastConfig
from livedrill.metrics.config import MetricsConfig
from livedrill.platforms import registry as platform_registry
from livedrill.specbase import PlatformConfig, SpecModel, VMName, VMRef

__all__ = ["PlatformConfig", "SpecModel", "VMName", "VMRef"]  # re-exported: the spec's own types, for its readers

M = TypeVar("M", bound=BaseModel)


# ---------------------------------------------------------------- platforms: one section per registered kind


def _platform_union() -> Any:
    """The `platform:` section: one model per registered platform kind, told apart by `kind`."""
    models = tuple(p.config for p in platform_registry.kinds().values())
    return Annotated[Union[models], Field(discriminator="kind")]


Platform = _platform_union()


# ---------------------------------------------------------------- modes


class TargetedMode(SpecModel):
    kind: Literal["targeted"]
    target_node: str | None = Field(None, description="Node (KubeVirt) or host name (libvirt); default: the scheduler picks")
    migrate_back: bool = Field(
        False, description="When every VM passed, live-migrate each back to its source node (probed and checked like "
                           "the outbound leg), so the drill ends where it started and can be repeated")


class DrainMode(SpecModel):
    kind: Literal["drain"]
    node: str
    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False
    keep_cordoned: bool = False
    allow_non_migratable: bool = Field(
        False, description="Start even when a VMI on the node cannot live-migrate (it will be shut down by its eviction strategy)"
    )


Mode = Annotated[Union[TargetedMode, DrainMode], Field(discriminator="kind")]


# ---------------------------------------------------------------- probes


class SecretHeader(SpecModel):
    """A request header whose value is read from its source by each process that sends the request.

    The spec (and so the evidence's spec.yaml) names only the source, so a stage reopened in another process,
    or `livedrill recover`, sends the same credential; a secret written in `headers` is redacted in spec.yaml.
    """

    name: str = Field(description="The header, e.g. Authorization")
    env: str | None = Field(None, description="Environment variable holding the value")
    file: Path | None = Field(None, description="File holding the value (a trailing newline is dropped), e.g. a mounted Secret")
    prefix: str = Field("", description='Put before the value, e.g. "Bearer "')

    @model_validator(mode="after")
    def _one_source(self) -> "SecretHeader":
        if (self.env is None) == (self.file is None):
            raise ValueError(f"header {self.name}: give exactly one of env or file")
        return self

    def resolve(self) -> str:
        """The header's value, read now from its source."""
        from livedrill.errors import InputError  # imported when used: it loads httpx, which parsing a spec does not need

        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise InputError(f"secret header {self.name}: environment variable {self.env} is not set")
        else:
            try:
                value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise InputError(f"secret header {self.name}: cannot read {self.file}: {exc.strerror}") from None
        return self.prefix + value


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{v!r} must start with http:// or https://")
    return v


HttpUrlText = Annotated[str, AfterValidator(_http_url)]


class HttpRequestTemplate(SpecModel):
    """A request whose url, headers and body may carry `{txid}` (the transaction's idempotency key)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: HttpUrlText
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: list[SecretHeader] = Field(
        default_factory=list, description="Headers carrying credentials, each read from an environment variable or a file")
    json_body: Any = Field(None, alias="json")
    expect_status: list[int] = Field(default_factory=lambda: [200])
    expect_json: dict[str, Any] = Field(
        default_factory=dict, description="Top-level JSON fields that must equal these values ({txid} substituted)"
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def resolved_headers(self) -> dict[str, str]:
        """Every header to send: `headers`, then each secret header read from its source now."""
        return {**self.headers, **{h.name: h.resolve() for h in self.secret_headers}}


class TLSConfig(SpecModel):
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True


class ProbeBase(SpecModel):
    name: str
    vm: VMName = Field(description="The VM this probe measures, as namespace/name")
    rate_per_s: float = Field(100.0, gt=0, le=20000)
    timeout_ms: float = Field(2000.0, gt=0)
    max_in_flight: int = Field(256, gt=0)
    max_connections: int = Field(
        32, gt=0, description="Keep-alive connections per target; more in-flight probes wait for one (no connect storms)"
    )
    tls: TLSConfig | None = None


class ReconcileConfig(SpecModel):
    """How the final read-back of every acknowledged transaction is judged."""

    enabled: bool = True
    not_found_status: list[int] = Field(default_factory=lambda: [404], description="Read statuses that mean 'no such transaction'")
    count_field: str | None = Field(
        None, description="Top-level JSON field of the read-back counting postings with this id (e.g. 'postings'); >1 is a duplicate"
    )


# Each probe kind says where it goes (`target`, shown in its report) and which URLs it calls (`urls`: any
# https:// one needs a TLS context); its runner is registered in livedrill/probe/runners.py.
class TransactionProbe(ProbeBase):
    kind: Literal["transaction"]
    write: HttpRequestTemplate
    read: HttpRequestTemplate
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)

    @property
    def target(self) -> str:
        return self.write.url

    @property
    def urls(self) -> tuple[str, ...]:
        return self.write.url, self.read.url


class HttpProbe(ProbeBase):
    kind: Literal["http"]
    request: HttpRequestTemplate

    @property
    def target(self) -> str:
        return self.request.url

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.request.url,)


class TcpProbe(ProbeBase):
    kind: Literal["tcp"]
    host: str
    port: int = Field(gt=0, lt=65536)
    send: str | None = None
    expect: str | None = None

    @property
    def target(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def urls(self) -> tuple[str, ...]:
        return ()


Probe = Annotated[Union[TransactionProbe, HttpProbe, TcpProbe], Field(discriminator="kind")]


# ---------------------------------------------------------------- SLOs, budgets, evidence


class SLO(SpecModel):
    max_downtime_ms: float = Field(
        gt=0, description="Longest allowed outage: from the last successful probe before it to the first after it")
    max_stall_ms: float | None = Field(
        None, gt=0, description="Longest a request already in flight may wait for its answer, TCP retransmissions "
                                "included (null: reported, not judged)")
    p99_latency_ms: float = Field(gt=0, description="p99 probe latency outside the migration's stop-and-copy")
    max_lost_transactions: int = Field(0, ge=0)
    max_duplicated_transactions: int = Field(0, ge=0)
    max_failed_requests: int = Field(0, ge=0, description="Probe requests that failed (error or timeout)")
    max_failure_streak: int | None = Field(
        3, gt=0, description="During the migration, this many consecutive failed probes abort it (null: no streak rule)"
    )


class Budgets(SpecModel):
    migration_timeout_per_gib_s: float = Field(
        150.0, gt=0, description="Migration deadline per GiB of guest memory (KubeVirt completionTimeoutPerGiB)"
    )
    min_migration_timeout_s: float = Field(30.0, gt=0)
    warmup_s: float = Field(2.0, ge=0, description="Probe baseline before the migration starts")
    cooldown_s: float = Field(2.0, ge=0, description="Probe window after the migration ends")
    abort_timeout_s: float = Field(60.0, gt=0, description="How long a cancel may take to be observed")
    probe_smoke_s: float = Field(
        1.0, gt=0, description="Longest the probes' smoke run before the drill lasts; it ends sooner once every "
                               "probe has probe_smoke_successes successes, or at the first failure")
    probe_smoke_successes: int = Field(20, ge=1, description="Successes per probe that pass the smoke run")


class TsaConfig(SpecModel):
    """An RFC 3161 Time-Stamping Authority that stamps every sealed manifest (`verify --tsa-root` checks it)."""

    url: HttpUrlText = Field(description="The TSA's HTTP(S) endpoint, e.g. https://tsa.bank.internal/tsr")
    timeout_s: float = Field(10.0, gt=0, le=300, description="One request's connect and read timeout")
    deadline_s: float = Field(30.0, gt=0, le=3600, description="All tries of one timestamp together (transient errors are retried)")


class EvidenceConfig(SpecModel):
    dir: Path = Field(Path("evidence"), description="Archive directory; one sub-directory per run")
    signing_key: Path | None = Field(
        None, description="Ed25519 private key (PEM) that signs each sealed run; default: $LIVEDRILL_SIGNING_KEY")
    generate_lab_key: bool = Field(
        False, description="Create signing_key on first use. For labs only: production keys are provisioned")
    witness: Path | None = Field(
        None, description="A file outside the archive (another host's mount, a WORM share) to which every seal appends "
        "the new chain head; `livedrill evidence verify --witness FILE` checks each is still in the chain")
    tsa: TsaConfig | None = Field(
        None, description="Timestamp every sealed run here; a TSA that does not answer leaves the run sealed without "
        "one (`livedrill evidence timestamp` adds it later)")
    store: ObjectStoreConfig | None = Field(
        None, description="Seal every run into this S3 bucket with Object Lock (WORM); `dir` is then the local staging area")


# ---------------------------------------------------------------- operations: schedule, approval, concurrency


class ChangeFreeze(SpecModel):
    """Dates (inclusive, in the schedule's timezone) on which no scheduled drill may start."""

    start: date
    end: date | None = Field(None, description="Last frozen day; default: the start day only")
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> "ChangeFreeze":
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class ScheduleConfig(SpecModel):
    # cron's day-of-week field with `#n` picks the n-th such weekday: 6#1 is the first Saturday.
    cron: str = Field("0 2 * 1,4,7,10 6#1", description="When the quarterly drill starts (5-field cron, local time)")
    timezone: str = Field("Asia/Shanghai", description="IANA timezone of the cron and of the change-freeze dates")
    change_freeze: list[ChangeFreeze] = Field(default_factory=list)
    horizon_days: int = Field(1100, gt=0, le=3700, description="How far ahead `serve` lists the scheduled runs")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        try:
            CronSim(v, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"{v!r} is not a 5-field cron expression: {exc}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA timezone (e.g. Asia/Shanghai)") from None
        return v


class ApprovalPolicy(SpecModel):
    required: bool = Field(False, description="Pause for a human approval before the first disruptive step")
    timeout_s: int = Field(3600, gt=0, description="An approval not given within this time ends the drill unchanged")
    poll_interval_s: int = Field(5, gt=0, description="How often the paused run asks the server for the answer")


class ConcurrencyPolicy(SpecModel):
    """One drill per cluster: what a second drill does while another holds the cluster."""

    on_busy: Literal["wait", "fail"] = "fail"
    wait_timeout_s: float = Field(3600.0, gt=0, description="With on_busy: wait, give up after this long")
    fail_fast_s: float = Field(
        10.0, gt=0, description="With on_busy: fail, how long one attempt may take (an API round trip on a loaded server)")
    lease_s: float = Field(
        60.0, ge=60, le=86400, description="The cluster slot's lease, renewed while the drill runs: a drill killed outright "
                                           "(SIGKILL, node crash) frees its cluster this long after its last renewal, plus "
                                           "the server's lease sweep (15 s); 60 s is the least Prefect's server takes")


_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class DrillWindow(SpecModel):
    """When a drill may start, read in `schedule.timezone`. A range may wrap midnight (22:00-04:00)."""

    allowed_hours: str = Field("00:00-24:00", description="HH:MM-HH:MM; the end is exclusive; may wrap midnight")
    weekdays: list[Weekday] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        description="Days on which the window opens (the day the range starts on)")

    @field_validator("allowed_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        match = _HOURS.match(v)
        if not match or (match[3] == "24" and match[4] != "00"):
            raise ValueError(f"{v!r} is not a range of HH:MM-HH:MM (e.g. 01:00-05:00)")
        if v[:5] == v[6:]:
            raise ValueError(f"{v!r} is an empty range")
        return v

    @field_validator("weekdays")
    @classmethod
    def _some_days(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one weekday")
        return v


class PreflightPolicy(SpecModel):
    """What the pre-flight's compliance checks hold the drill's VMs and cluster to: core-tier workloads share no
    kernel (no plain containers), and the core VM runs hardware-virtualized, pinned as its domain asks."""

    core_tier_selector: dict[str, str] = Field(
        default_factory=lambda: {"tier": "core"},
        description="Labels marking core-tier workloads: these must run as VMs (virt-launcher), never as plain containers")
    require_dedicated_cpus: bool = Field(
        True, description="The VM's vCPUs must be pinned (spec.domain.cpu.dedicatedCpuPlacement, Guaranteed QoS)")
    require_guest_agent: bool = Field(
        False, description="The drill relies on the QEMU guest agent: its AgentConnected condition must be True")


class DrillSpec(SpecModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    cluster: str = Field(description="Cluster or host-group name: one drill per cluster at a time")
    platform: Platform
    vms: list[VMRef] = Field(min_length=1)
    mode: Mode
    probes: list[Probe] = Field(default_factory=list)
    slo: SLO
    budgets: Budgets = Field(default_factory=Budgets)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    concurrency: ConcurrencyPolicy = Field(default_factory=ConcurrencyPolicy)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Where drill metrics go; KubeVirt's to read")
    window: DrillWindow | None = Field(None, description="Allowed start hours and weekdays; default: any time")
    preflight: PreflightPolicy = Field(default_factory=PreflightPolicy)
    forecast: ForecastConfig | None = Field(
        None, description="Inputs of the pre-flight's convergence forecast; default: no forecast (check not_applicable)")

    @model_validator(mode="after")
    def _consistent(self) -> "DrillSpec":
        problems = []
        for i, p in enumerate(self.probes):
            if p.vm not in self.vms:
                problems.append(f"probes[{i}].vm '{p.vm}' is not one of the drill's vms {sorted(str(v) for v in self.vms)}")
        names = [p.name for p in self.probes]
        if len(set(names)) != len(names):
            problems.append(f"probe names must be unique, got {names}")
        if isinstance(self.mode, TargetedMode) and len(self.vms) != 1:
            problems.append("mode targeted migrates exactly one VM; list one entry under vms (or use mode drain)")
        if isinstance(self.mode, TargetedMode) and self.mode.target_node is not None:
            problems += self.platform.target_problems(self.mode.target_node)
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------------------------------------------------------------- loading with line numbers


class SpecProblem(BaseModel):
    path: str  # dotted field path, e.g. "probes[0].rate_per_s"
    line: int | None  # 1-based line in the YAML file, when known
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '<root>'}: {self.message}"


class SpecError(Exception):
    def __init__(self, source: str, problems: list[SpecProblem]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def _line_index(node: yaml.Node, prefix: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in a composed YAML document to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (key.value,)
            out[path] = key.start_mark.line + 1
            _line_index(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[prefix + (i,)] = item.start_mark.line + 1
            _line_index(item, prefix + (i,), out)
    return out


def _format_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _yaml_loc(loc: tuple, data: Any) -> tuple:
    """Drop pydantic's discriminator tags so the path matches the YAML document.

    A tagged union (platform, mode, probes) puts the chosen `kind` into the error's location
    (`platform.kubevirt.context`); in the document that tag is the mapping's own `kind` value.
    """
    clean: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            clean.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            clean.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and node.get("kind") == part:
            continue
        else:
            clean.append(part)  # a missing field: the nearest existing ancestor gives the line
            node = None
    return tuple(clean)


def parse_yaml_model(model: type[M], text: str, source: str, what: str) -> M:
    """YAML text validated as `model`; every problem is a SpecProblem with its field path and line.

    `what` names the document in messages ("drill spec", "drill programme")."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise SpecError(source, [SpecProblem(path="", line=line, message=f"not valid YAML: {getattr(exc, 'problem', exc)}")])
    if not isinstance(data, dict):
        raise SpecError(source, [SpecProblem(path="", line=1, message=f"a {what} is a YAML mapping")])
    lines = _line_index(root) if root is not None else {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _yaml_loc(tuple(err["loc"]), data)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown field (not part of the {what}; check its spelling)"
            problems.append(SpecProblem(path=_format_path(loc), line=line_of(lines, loc), message=msg))
        raise SpecError(source, problems) from None


def line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    """The line of `loc`, or of its nearest ancestor that exists in the file (a missing field)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def yaml_lines(text: str) -> dict[tuple, int]:
    """Every key path of a YAML document (already known to parse) to its 1-based line."""
    root = yaml.compose(text)
    return _line_index(root) if root is not None else {}


def parse_spec(text: str, source: str = "<spec>") -> DrillSpec:
    return parse_yaml_model(DrillSpec, text, source, "drill spec")


def read_spec_text(path: Path) -> str:
    """A spec file's text; an unreadable file raises SpecError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(path), [SpecProblem(path="", line=None, message=f"cannot read the file: {exc.strerror}")])


def load_spec(path: str | Path) -> DrillSpec:
    path = Path(path)
    return parse_spec(read_spec_text(path), source=str(path))


def completion_budget_s(per_gib_s: float, gib: float) -> float:
    """The one migration-budget formula: seconds per GiB to move, counting at least 2 GiB, as KubeVirt's
    completionTimeoutPerGiB does (so a drill's deadline and KubeVirt's own budget compare like for like)."""
    return per_gib_s * max(2.0, gib)


def migration_deadline_s(budgets: Budgets, gib: float) -> float:
    """The drill's migration deadline: it scales with the GiB to move (guest memory, plus disks a libvirt
    migration copies), never below the floor."""
    return max(budgets.min_migration_timeout_s, completion_budget_s(budgets.migration_timeout_per_gib_s, gib))


def _rebuild_platform_union() -> None:
    """A platform registered after this module was loaded joins the `platform:` union."""
    global Platform
    Platform = _platform_union()
    DrillSpec.model_fields["platform"] = FieldInfo.from_annotation(Platform)
    DrillSpec.model_rebuild(force=True)


platform_registry.on_change(_rebuild_platform_union)
