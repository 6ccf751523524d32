"""The pieces of a drill spec that platform packages build on: the strict model base, VMRef, PlatformConfig.

Apart from `livedrill.spec` because the spec's platform union is assembled from the platform packages
(`livedrill.platforms.registry`), and each of those declares its own `platform:` section on these.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError, WithJsonSchema, field_validator

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VMRef(SpecModel):
    """One VM, as the spec names it. Frozen and hashable: it keys the drill's per-VM records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "default"
    name: str

    @field_validator("namespace", "name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if not _DNS1123.match(v) or len(v) > 253:
            raise ValueError(f"{v!r} is not a valid Kubernetes/libvirt name (lower-case DNS-1123)")
        return v

    @classmethod
    def parse(cls, text: str, field: str = "vm") -> "VMRef":
        """`namespace/name` (as probes and evidence name a VM; a bare name is in "default") into a VMRef.
        A malformed one raises ValueError naming `field`, the place it was read from."""
        namespace, _, name = text.rpartition("/")
        if "/" in namespace:
            raise ValueError(f"{field}: {text!r} is not namespace/name (more than one '/')")
        try:
            return cls(namespace=namespace or "default", name=name)
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors())
            raise ValueError(f"{field}: {text!r} is not namespace/name: {problems}") from None

    def __str__(self) -> str:
        """For display and serialisation only; code compares and keys by the VMRef itself."""
        return f"{self.namespace}/{self.name}"


def _vm_from_text(value: Any) -> Any:
    return VMRef.parse(value) if isinstance(value, str) else value


# A VMRef that files and specs write as "namespace/name" (probes, evidence, records crossing a task boundary):
# parsed once when read, a VMRef in code, written back as the same text.
VMName = Annotated[VMRef, BeforeValidator(_vm_from_text), PlainSerializer(str, return_type=str),
                   WithJsonSchema({"type": "string", "description": "namespace/name"})]


class PlatformConfig(SpecModel):
    """The spec's `platform:` section of one platform kind; each platform package subclasses it with
    `kind: Literal["<kind>"]` and its own fields."""

    kind: str

    def target_problems(self, target_node: str) -> list[str]:
        """What is wrong with `mode.target_node` on this platform, judged from the spec alone (none by default)."""
        return []
