"""Server-level API faults for tests: answer the next N requests matching a path with an error or a delay.

POST /lab/v1/faults {"path_regex": "...", "method": "GET"|null, "count": N, "status": 500|429|null,
"delay_ms": 0, "retry_after_s": 1}. A rule with a status answers that status (Retry-After on 429);
a rule with only a delay answers normally after the delay. GET lists rules, DELETE clears them.
"""

from __future__ import annotations

import re
import threading

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path_regex: str
    method: str | None = None
    count: int = Field(1, ge=1)
    status: int | None = Field(None, ge=400, le=599)
    delay_ms: float = Field(0.0, ge=0, le=120_000)
    retry_after_s: int = Field(1, ge=0)

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        re.compile(v)
        return v


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [r.model_copy() for r in self._rules]

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first rule matching this request, consuming one of its `count`."""
        with self._lock:
            for rule in self._rules:
                if (rule.method is None or rule.method.upper() == method) and re.search(rule.path_regex, path):
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                    return rule.model_copy(update={"count": rule.count + 1})
        return None
