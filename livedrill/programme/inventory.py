"""The programme's inventory: every VM in its scope, as typed records, from whatever can list them.

A source answers for one cluster scope at a time (`InventorySource`); `gather` turns the answers into the
VMs to drill and the coverage exceptions (excluded by approval, or unable to live-migrate) — a core VM is
never dropped without a line saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import Field, field_validator, model_validator

from livedrill.errors import InputError
from livedrill.outcomes import Record
from livedrill.programme.spec import ClusterScope, ProgrammeSpec
from livedrill.spec import VMRef, parse_yaml_model, read_spec_text


class Target(Record):
    """One VM the programme may drill. For libvirt, `vm` is default/<domain> and `node` the host."""

    cluster: str
    vm: VMRef
    node: str | None = Field(description="Where it runs now: the node (KubeVirt) or host (libvirt); None if not running")
    gib: float = Field(ge=0, description="GiB the migration moves: guest memory, plus disks a libvirt migration copies")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict, description="Probe templates may read them: {vm.annotations[KEY]}")
    migratable: bool = True
    why_not: str | None = Field(None, description="Why it cannot live-migrate (with migratable: false)")

    @field_validator("vm", mode="before")
    @classmethod
    def _vm_text(cls, v: object) -> object:
        return VMRef.parse(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _reason_given(self) -> "Target":
        if not self.migratable and not self.why_not:
            raise ValueError(f"{self.vm} is not migratable: say why (why_not)")
        if self.migratable and self.gib <= 0:
            raise ValueError(f"{self.vm}: gib must be greater than 0 for a VM to migrate (its memory)")
        return self


class InventorySource(Protocol):
    """Lists a cluster scope's VMs matching its selector; reads only."""

    def targets(self, scope: ClusterScope) -> list[Target]: ...


class ScopedSources:
    """Each cluster scope from its own source (live clusters), the others from `rest` (a file)."""

    def __init__(self, by_scope: dict[str, InventorySource], rest: InventorySource | None):
        self._by_scope = by_scope
        self._rest = rest

    def targets(self, scope: ClusterScope) -> list[Target]:
        source = self._by_scope.get(scope.name, self._rest)
        if source is None:
            raise InputError(f"cluster {scope.name}: no inventory: discover it (KubeVirt) or list it in an inventory file")
        return source.targets(scope)


def selected(labels: dict[str, str], selector: dict[str, str]) -> bool:
    """Equality selector, as the programme's `selector:` and readiness's --selector match labels."""
    return all(labels.get(key) == value for key, value in selector.items())


class StaticInventory:
    """An inventory known in advance: a file exported from a CMDB, or a test's fixture."""

    def __init__(self, targets: list[Target]):
        self._by_cluster: dict[str, list[Target]] = {}
        for target in targets:
            self._by_cluster.setdefault(target.cluster, []).append(target)

    def targets(self, scope: ClusterScope) -> list[Target]:
        return [t for t in self._by_cluster.get(scope.name, []) if selected(t.labels, scope.selector)]


class InventoryFile(Record):
    targets: list[Target]

    @model_validator(mode="after")
    def _unique(self) -> "InventoryFile":
        seen: set[tuple[str, str]] = set()
        twice = set()
        for t in self.targets:
            key = (t.cluster, str(t.vm))
            if key in seen:
                twice.add(f"{t.cluster}:{t.vm}")
            seen.add(key)
        if twice:
            raise ValueError(f"listed more than once: {sorted(twice)}")
        return self


def load_inventory(path: str | Path) -> StaticInventory:
    """An inventory file (YAML or JSON: `targets: [...]`); any problem raises SpecError naming field and line."""
    path = Path(path)
    text = read_spec_text(path)
    return StaticInventory(parse_yaml_model(InventoryFile, text, str(path), "inventory").targets)


class CoverageException(Record):
    """An in-scope VM the quarter does not drill, and why: reported with the coverage, never dropped."""

    cluster: str
    vm: VMRef
    kind: Literal["excluded", "not_migratable"]
    reason: str
    approved_by: str | None = None  # who accepted an exclusion; a non-migratable VM has no approval yet


class Inventory(Record):
    targets: list[Target] = Field(default_factory=list)  # to drill
    exceptions: list[CoverageException] = Field(default_factory=list)
    empty_clusters: list[str] = Field(default_factory=list)  # scopes where no VM matched: a scope never goes unnoticed


def classify(scope: ClusterScope, target: Target) -> CoverageException | None:
    """Pure: why an in-scope VM is not drilled this quarter, or None when it is to be drilled."""
    for exclusion in scope.exclusions:
        if exclusion.vm == str(target.vm):
            return CoverageException(cluster=scope.name, vm=target.vm, kind="excluded", reason=exclusion.reason,
                                     approved_by=exclusion.approved_by)
    if not target.migratable:
        return CoverageException(cluster=scope.name, vm=target.vm, kind="not_migratable", reason=target.why_not or "")
    return None


def gather(spec: ProgrammeSpec, source: InventorySource) -> Inventory:
    """Every cluster scope's VMs, split into those to drill and the coverage exceptions."""
    inventory = Inventory()
    for scope in spec.clusters:
        found = source.targets(scope)
        if not found:
            inventory.empty_clusters.append(scope.name)
        for target in found:
            exception = classify(scope, target)
            if exception is None:
                inventory.targets.append(target)
            else:
                inventory.exceptions.append(exception)
    return inventory
