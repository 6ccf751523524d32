"""The pieces of a drill spec that platform packages build on: the strict model base, VMRef, PlatformConfig.

Apart from `livedrill.spec` because the spec's platform union is assembled from the platform packages
(`livedrill.platforms.registry`), and each of those declares its own `platform:` section on these.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VMRef(SpecModel):
    namespace: str = "default"
    name: str

    @field_validator("namespace", "name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if not _DNS1123.match(v) or len(v) > 253:
            raise ValueError(f"{v!r} is not a valid Kubernetes/libvirt name (lower-case DNS-1123)")
        return v

    @classmethod
    def parse(cls, text: str) -> "VMRef":
        """`namespace/name` (as probes and evidence name a VM) into a VMRef."""
        namespace, _, name = text.rpartition("/")
        return cls(namespace=namespace or "default", name=name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class PlatformConfig(SpecModel):
    """The spec's `platform:` section of one platform kind; each platform package subclasses it with
    `kind: Literal["<kind>"]` and its own fields."""

    kind: str

    def target_problems(self, target_node: str) -> list[str]:
        """What is wrong with `mode.target_node` on this platform, judged from the spec alone (none by default)."""
        return []
