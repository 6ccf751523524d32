"""One VM's drill spec in a programme: the drill template aimed at that VM, its probes rendered for it.

A template's probe may name the VM it is aimed at with placeholders in any string (URL, headers, body, host):
`{vm.namespace}`, `{vm.name}`, `{vm.labels[KEY]}` and `{vm.annotations[KEY]}` (e.g. an annotation naming the
VM's gateway test account). `{txid}` is the probe's own and is left for each transaction. The programme's
`vms:` map gives one VM its own probes instead, and its own SLO and budget values over the template's.
A VM whose probes cannot be rendered (a label it lacks, no probe at all) is an error naming the VM: a drill
without a probe proves nothing about accounting, so it is never planned silently.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from livedrill.errors import InputError
from livedrill.programme.inventory import Target
from livedrill.programme.spec import ClusterScope, Programme
from livedrill.spec import DrillSpec

_PLACEHOLDER = re.compile(r"\{vm\.(?P<field>namespace|name|labels|annotations)(?:\[(?P<key>[^\]]*)\])?\}")


class DrillTemplateError(InputError):
    """A VM's drill cannot be made from the programme's template (the message names the VM and the field)."""


def _render_text(text: str, target: Target, where: str) -> str:
    def value(match: re.Match[str]) -> str:
        field, key = match["field"], match["key"]
        if field in ("namespace", "name"):
            if key is not None:
                raise DrillTemplateError(f"{target.vm}: {where}: {match[0]} takes no [key]")
            return getattr(target.vm, field)
        if key is None:
            raise DrillTemplateError(f"{target.vm}: {where}: {match[0]} needs a key, e.g. {{vm.{field}[team]}}")
        found = (target.labels if field == "labels" else target.annotations).get(key)
        if found is None:
            raise DrillTemplateError(f"{target.vm}: {where}: the VM has no {field[:-1]} {key!r} (asked for by {match[0]})")
        return found

    return _PLACEHOLDER.sub(value, text)


def _render(value: Any, target: Target, where: str) -> Any:
    if isinstance(value, str):
        return _render_text(value, target, where)
    if isinstance(value, list):
        return [_render(v, target, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _render(v, target, f"{where}.{k}") for k, v in value.items()}
    return value


def drill_spec_for(programme: Programme, scope: ClusterScope, target: Target) -> DrillSpec:
    """The drill of `target` alone on `scope`: the template's budgets, SLO and probes, rendered for the VM."""
    template = programme.template
    data = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    override = programme.spec.vms.get(str(target.vm))
    probes = [p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in override.probes] \
        if override is not None and override.probes else data.get("probes", [])
    if not probes:
        raise DrillTemplateError(f"{target.vm}: no probe to measure it with: the drill template {template.name} has none "
                                 f"and the programme's vms.{target.vm}.probes gives none")
    source = f"vms.{target.vm}.probes" if override is not None and override.probes else "drill template probes"
    rendered = []
    for i, probe in enumerate(probes):
        probe = _render({k: v for k, v in probe.items() if k != "vm"}, target, f"{source}[{i}]")
        rendered.append({**probe, "vm": str(target.vm)})
    data.update(name=f"{programme.spec.name}-{target.vm.name}"[:63].rstrip("-"), cluster=scope.name,
                platform=scope.platform.model_dump(mode="json", by_alias=True, exclude_none=True),
                vms=[target.vm.model_dump()], probes=rendered)
    if override is not None:
        data["slo"] = {**data["slo"], **override.slo}
        data["budgets"] = {**data.get("budgets", {}), **override.budgets}
    try:
        return DrillSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DrillTemplateError(f"{target.vm}: its drill spec is invalid at {where}: {first['msg']}") from None


def undrillable(programme: Programme, targets: list[Target]) -> list[str]:
    """Why each migratable in-scope VM's drill cannot be made, one line per VM (empty: every VM can be drilled)."""
    scopes = {scope.name: scope for scope in programme.spec.clusters}
    problems = []
    for target in targets:
        if not target.migratable or target.cluster not in scopes:
            continue
        try:
            drill_spec_for(programme, scopes[target.cluster], target)
        except DrillTemplateError as exc:
            problems.append(str(exc))
    return problems
