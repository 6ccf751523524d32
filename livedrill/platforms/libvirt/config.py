"""The spec's `platform:` section for plain libvirt/KVM hosts (imports no client library)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from livedrill.specbase import PlatformConfig, SpecModel


class LibvirtHost(SpecModel):
    name: str
    uri: str = Field(description="libvirt URI, e.g. qemu+ssh://host/system or qemu+unix:///system?socket=...")
    migration_uri: str | None = Field(None, description="Data-plane URI, e.g. tcp://dest:49152")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError(f"{v!r} is not a libvirt URI (expected driver[+transport]://[host]/path)")
        return v


class LibvirtMigrationFlags(SpecModel):
    live: bool = True
    peer2peer: bool = True
    persist_dest: bool = True
    undefine_source: bool = True
    copy_storage_all: bool = False
    abort_on_error: bool = True
    auto_converge: bool = False
    allow_post_copy: bool = False


class LibvirtPlatform(PlatformConfig):
    kind: Literal["libvirt"]
    hosts: list[LibvirtHost] = Field(min_length=2)
    flags: LibvirtMigrationFlags = Field(default_factory=LibvirtMigrationFlags)
    bandwidth_mib_s: int | None = Field(None, gt=0)
    max_downtime_ms: int | None = Field(None, gt=0)
    hardware_isolation: Literal["required", "lab-exempt"] = Field(
        "required",
        description="required: the pre-flight fails unless the VM really runs hardware-virtualized (KVM). "
        "lab-exempt: a lab without hardware virtualization (TCG) reports the check not_applicable, with its reason",
    )

    @model_validator(mode="after")
    def _unique_hosts(self) -> "LibvirtPlatform":
        names = [h.name for h in self.hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"host names must be unique, got {names}")
        return self

    def target_problems(self, target_node: str) -> list[str]:
        hosts = {h.name for h in self.hosts}
        if target_node not in hosts:
            return [f"mode.target_node {target_node!r} is not one of platform.hosts {sorted(hosts)}"]
        return []
