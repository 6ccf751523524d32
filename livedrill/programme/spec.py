"""The programme spec: a quarter's scope, windows, limits, drill template, retest policy and sign-off roles.

Validated like a drill spec (pydantic, extra="forbid"), with every problem named by field path and line.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, field_validator, model_validator

from livedrill.spec import (
    ApprovalPolicy, ChangeFreeze, DrillSpec, Platform, Probe, SpecError, SpecModel, SpecProblem, TargetedMode, VMRef, line_of, load_spec,
    parse_yaml_model, read_spec_text, yaml_lines)

PROGRAMME_KIND = "programme"
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


def quarter_bounds(quarter: str) -> tuple[date, date]:
    """First day of the quarter and first day after it, e.g. 2027Q1 -> (2027-01-01, 2027-04-01)."""
    match = _QUARTER.match(quarter)
    if not match:
        raise ValueError(f"{quarter!r} is not a quarter like 2027Q1")
    year, q = int(match[1]), int(match[2])
    start = date(year, 3 * q - 2, 1)
    end = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
    return start, end


class Exclusion(SpecModel):
    """A VM left out of the quarter's coverage on purpose: reported as an exception, never silently dropped."""

    vm: str = Field(description="namespace/name (KubeVirt) or default/<domain> (libvirt)")
    reason: str = Field(min_length=1)
    approved_by: str = Field(min_length=1, description="Who accepted the exception")

    @field_validator("vm")
    @classmethod
    def _vm_ref(cls, v: str) -> str:
        return str(VMRef.parse(v))


class ClusterLimits(SpecModel):
    """How much of a window one cluster's drills may take. Drills on one cluster run one after the other
    (the cluster's slot); clusters run in parallel."""

    vms_per_drill: int = Field(
        1, ge=1, le=5, description="VMs one planned drill takes, at most KubeVirt's parallelMigrationsPerCluster "
                                   "default of 5; they run back to back, each VM a targeted drill of its own (its own "
                                   "probes and evidence), so the drill's budget is the sum of theirs")
    outbound_per_node: int = Field(
        2, ge=1, description="VMs of one drill leaving the same node (KubeVirt parallelOutboundMigrationsPerNode, default 2)")
    drills_per_window: int | None = Field(None, ge=1, description="At most this many drills of this cluster in one window")


class ClusterScope(SpecModel):
    name: str = Field(pattern=_NAME, description="The cluster or host group, as drill specs' `cluster:` names it")
    platform: Platform = Field(description="How to reach it, as a drill spec's `platform:` section says")
    selector: dict[str, str] = Field(default_factory=lambda: {"tier": "core"}, description="Labels of the core VMs")
    exclusions: list[Exclusion] = Field(default_factory=list)
    limits: ClusterLimits = Field(default_factory=ClusterLimits)

    @field_validator("selector")
    @classmethod
    def _some_labels(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("an empty selector would select every VM; name the core tier's labels (e.g. tier: core)")
        return v


class Window(SpecModel):
    """A change window, in local time of `windows.timezone` (no UTC offset: the timezone gives it)."""

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _local_and_ordered(self) -> "Window":
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("give local times without an offset; windows.timezone says where they are")
        if self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self


class Windows(SpecModel):
    timezone: str = Field(description="IANA timezone of the windows and change-freeze dates (e.g. Asia/Shanghai)")
    slots: list[Window] = Field(min_length=1)
    change_freeze: list[ChangeFreeze] = Field(default_factory=list, description="No window opens on these dates")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA timezone (e.g. Asia/Shanghai)") from None
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> "Windows":
        ordered = sorted(self.slots, key=lambda w: w.start)
        for before, after in zip(ordered, ordered[1:]):
            if after.start < before.end:
                raise ValueError(f"windows {before.start}–{before.end} and {after.start}–{after.end} overlap")
        return self


class DrillTemplate(SpecModel):
    spec: Path = Field(description="The drill spec each drill starts from (its budgets, SLOs, probes); relative "
                                   "to this file. Its mode must be targeted: coverage is per VM")
    setup_s: float = Field(
        300.0, ge=0, description="Per drill, beyond the migration's own budget: pre-flight, post-checks and sealing")
    start_s: float = Field(
        120.0, gt=0, description="How long one drill may take to start once its window asks for it: a worker takes "
                                 "it and its process opens its evidence (beyond any wait for the cluster's slot); "
                                 "a drill not started by then is cancelled and its VM stays to drill")


class RetestPolicy(SpecModel):
    """A VM whose drill failed is a deficiency: drilled again in a later window until it passes."""

    cool_off_days: int = Field(7, ge=0, description="Days after the failed drill before the retest (time to remediate)")
    max_attempts: int = Field(3, ge=1, description="Drills of one VM in a quarter before it stays an open deficiency")


class SignOff(SpecModel):
    roles: list[str] = Field(min_length=1, description="Roles that sign off the quarter (e.g. change-manager, CIO)")

    @field_validator("roles")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"roles must be unique, got {v}")
        return v


class VMOverride(SpecModel):
    """What one VM's drill takes from here instead of the drill template."""

    probes: list[Probe] = Field(default_factory=list, description="This VM's probes instead of the template's, written as "
                                "in a drill spec; the same {vm.*} placeholders apply, `vm` is set to this VM")
    slo: dict[str, Any] = Field(default_factory=dict, description="SLO fields over the template's (e.g. max_downtime_ms: 800)")
    budgets: dict[str, Any] = Field(default_factory=dict, description="Budget fields over the template's")

    @model_validator(mode="before")
    @classmethod
    def _probe_vm_optional(cls, data: Any) -> Any:
        # A probe here is aimed at the VM this entry is for: `vm` may be left out (it is set when the drill is made).
        if isinstance(data, dict) and isinstance(data.get("probes"), list):
            data = {**data, "probes": [{"vm": "placeholder/vm", **p} if isinstance(p, dict) else p for p in data["probes"]]}
        return data


class ProgrammeSpec(SpecModel):
    kind: Literal["programme"]
    name: str = Field(pattern=_NAME)
    description: str = ""
    quarter: str = Field(description="e.g. 2027Q1")
    clusters: list[ClusterScope] = Field(min_length=1)
    windows: Windows
    drill: DrillTemplate
    retest: RetestPolicy = Field(default_factory=RetestPolicy)
    approval: ApprovalPolicy = Field(
        default_factory=lambda: ApprovalPolicy(required=True),
        description="One approval per window: its parent run pauses on the window's plan (who, what, where, budgets) "
                    "until a change manager answers; the drill template's own approval still applies per drill")
    sign_off: SignOff
    vms: dict[str, VMOverride] = Field(
        default_factory=dict, description="Per VM (namespace/name): its own probes, SLO or budgets over the drill template's")

    @field_validator("vms")
    @classmethod
    def _vm_keys(cls, v: dict[str, VMOverride]) -> dict[str, VMOverride]:
        return {str(VMRef.parse(key, field=f'vms.{key}')): override for key, override in v.items()}

    @field_validator("quarter")
    @classmethod
    def _quarter(cls, v: str) -> str:
        quarter_bounds(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ProgrammeSpec":
        problems = []
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            problems.append(f"cluster names must be unique, got {names}")
        first, after = quarter_bounds(self.quarter)
        outside = [w for w in self.windows.slots
                   if w.start < datetime.combine(first, datetime.min.time())
                   or w.end > datetime.combine(after, datetime.min.time())]
        problems += [f"window {w.start}–{w.end} is not inside {self.quarter} ({first} to {after - timedelta(days=1)})"
                     for w in outside]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.windows.timezone)

    def quarter_span(self) -> tuple[datetime, datetime]:
        """The quarter's first instant and the first instant after it, at midnight in the windows' timezone."""
        first, after = quarter_bounds(self.quarter)
        zone = self.zone()
        return datetime.combine(first, time(), zone), datetime.combine(after, time(), zone)


class Programme(SpecModel):
    """A validated programme and the drill spec its template names."""

    spec: ProgrammeSpec
    template: DrillSpec


def is_programme(text: str) -> bool:
    """A YAML document is a programme spec when its top-level `kind` says so (drill specs have no `kind`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and data.get("kind") == PROGRAMME_KIND


def parse_programme(text: str, source: str = "<programme>") -> ProgrammeSpec:
    return parse_yaml_model(ProgrammeSpec, text, source, "drill programme")


def load_programme(path: str | Path) -> Programme:
    """The programme at `path` with its drill template loaded; any problem raises SpecError naming field and line."""
    path = Path(path)
    text = read_spec_text(path)
    spec = parse_programme(text, source=str(path))
    template_path = spec.drill.spec if spec.drill.spec.is_absolute() else path.parent / spec.drill.spec
    line = line_of(yaml_lines(text), ("drill", "spec"))
    try:
        template = load_spec(template_path)
    except SpecError as exc:
        inner = "; ".join(str(p) for p in exc.problems)
        raise SpecError(str(path), [SpecProblem(path="drill.spec", line=line, message=f"{template_path}: {inner}")]) from None
    if not isinstance(template.mode, TargetedMode):
        raise SpecError(str(path), [SpecProblem(
            path="drill.spec", line=line,
            message=f"{template_path} is a {template.mode.kind} drill; a programme's drills are targeted (one VM each)")])
    return Programme(spec=spec, template=template)
