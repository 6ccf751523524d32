"""The on-demand drill request: the pydantic model Prefect renders as the deployment's Run form."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from livedrill.spec import DrainMode, DrillSpec, TargetedMode, parse_spec


class DrillRequest(BaseModel):
    """What an operator fills in to start a drill now."""

    model_config = ConfigDict(extra="forbid", title="Drill request")

    spec: str = Field(description="Drill spec: the name of a served spec (e.g. lab-targeted) or its path")
    mode: Literal["as-specified", "targeted", "drain"] = Field(
        "as-specified", description="targeted: migrate the spec's VM; drain: evacuate target_node")
    target_node: str | None = Field(
        None, description="targeted: the destination node; drain: the node to drain. Empty: as in the spec")
    dry_run: bool = Field(False, description="Pre-flight, plan and approval preview only; nothing is changed")
    approval_required: bool = Field(True, description="Pause for a change manager's approval before anything moves")


class RequestError(ValueError):
    """The request names no served spec, or its overrides do not make a valid drill."""


def find_served_spec(name_or_path: str, served: list[Path]) -> Path:
    """Only specs `serve` was started with can run: an operator's form must not reach arbitrary files."""
    wanted = name_or_path.strip()
    for path in served:
        if wanted in (path.stem, str(path), path.name) or _same_file(wanted, path):
            return path
    names = ", ".join(sorted(p.stem for p in served)) or "none"
    raise RequestError(f"{wanted!r} is not a served drill spec (served: {names})")


def _same_file(wanted: str, path: Path) -> bool:
    try:
        return Path(wanted).resolve() == path.resolve()
    except OSError:
        return False


def apply_request(spec: DrillSpec, request: DrillRequest) -> DrillSpec:
    """The spec as this request runs it: mode and node overridden, approval as asked; validated again."""
    data = spec.model_dump(mode="json", by_alias=True)
    if request.mode == "drain":
        if not request.target_node:
            raise RequestError("mode drain needs target_node: the node to drain")
        data["mode"] = DrainMode(kind="drain", node=request.target_node).model_dump(mode="json")
    elif request.mode == "targeted":
        data["mode"] = TargetedMode(kind="targeted", target_node=request.target_node).model_dump(mode="json")
    elif request.target_node:
        mode = data["mode"]
        mode["target_node" if mode["kind"] == "targeted" else "node"] = request.target_node
    data["approval"]["required"] = request.approval_required
    try:
        return DrillSpec.model_validate(data)
    except ValueError as exc:
        raise RequestError(f"the request does not make a valid drill: {exc}") from None


def resolve_request(request: DrillRequest, served: list[Path]) -> tuple[DrillSpec, str]:
    """(spec as run, its text for the evidence). The text is the file's own unless the request changed it."""
    path = find_served_spec(request.spec, served)
    text = path.read_text(encoding="utf-8")
    spec = parse_spec(text, source=str(path))
    effective = apply_request(spec, request)
    if effective == spec:
        return spec, text
    header = f"# {path.name} as run by an on-demand request: {request.model_dump_json()}\n"
    return effective, header + yaml.safe_dump(effective.model_dump(mode="json", by_alias=True), sort_keys=False)
