"""Label and field selectors as the Kubernetes API parses them (pure functions)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable


class SelectorError(ValueError):
    """A selector the API cannot parse (answered with 400 BadRequest)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key, as in Kubernetes.
        return not present or labels[self.key] not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a `(...)` value set."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)$")
_KEY_RE = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=()]+)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    requirements = []
    for part in _split_top_level(text):
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(Requirement(m["key"], m["op"], values))
        elif m := _EQ_RE.match(part):
            op = "=" if m["op"] in ("=", "==") else "!="
            requirements.append(Requirement(m["key"], op, (m["value"],)))
        elif m := _KEY_RE.match(part):
            requirements.append(Requirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {part!r}")
    return requirements


def parse_field_selector(text: str | None, supported: frozenset[str]) -> list[Requirement]:
    """Field selectors allow only =, == and != on the fields a resource declares."""
    if not text:
        return []
    requirements = []
    for part in _split_top_level(text):
        m = _EQ_RE.match(part)
        if not m:
            raise SelectorError(f"invalid field selector: {part!r}")
        if m["key"] not in supported:
            raise SelectorError(f'field label not supported: {m["key"]}')
        op = "=" if m["op"] in ("=", "==") else "!="
        requirements.append(Requirement(m["key"], op, (m["value"],)))
    return requirements


def field_value(obj: dict[str, Any], dotted: str) -> str:
    """The string form of a dotted field of an object; a missing field reads as ""."""
    value: Any = obj
    for step in dotted.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def object_matcher(labels: list[Requirement], fields: list[Requirement]) -> Callable[[dict[str, Any]], bool]:
    def matches(obj: dict[str, Any]) -> bool:
        obj_labels = obj.get("metadata", {}).get("labels") or {}
        if not all(r.matches(obj_labels) for r in labels):
            return False
        # Field requirements never use set operators, so equality on the field's string value suffices.
        return all(Requirement("v", r.operator, r.values).matches({"v": field_value(obj, r.key)}) for r in fields)

    return matches
