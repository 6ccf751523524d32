"""One drill run as the stages see it: the spec, its evidence directory, its journal and its platform.

Each stage reopens the session from the run directory, so a stage, a rollback or `livedrill recover` runs
from any process, after a crash too: the journal, the timeline and the spec come from the evidence, and the
probes' credentials given as `secret_headers` are read from their source (an environment variable or a
file) by the process that sends them; the evidence names only the source. A credential written literally
in a probe's `headers` is redacted in spec.yaml: only the process that created the run keeps it (in
memory, below), so a stage that sends probe traffic (probe smoke, migrate, drain) reopened in another
process would send the redacted placeholder. The drill flow runs its stages in the process that created
the run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from livedrill.compensation import CompensationJournal
from livedrill.evidence.archive import Archive, EvidenceRun
from livedrill.evidence.keys import Signer, ensure_lab_key, load_signer
from livedrill.outcomes import Compensation, TimelineEvent, utcnow
from livedrill.platforms import registry
from livedrill.platforms.base import AdapterContext, PlatformAdapter
from livedrill.spec import DrillSpec, parse_spec

SPEC_FILE = "spec.yaml"
TIMELINE_FILE = "timeline.jsonl"
COMPENSATIONS_FILE = "compensations.json"


# The spec as given, by run directory, for the stages of a drill running in this process: the only copy of a
# credential written literally in a probe's `headers`. Elsewhere the redacted spec.yaml is read instead,
# which has everything else (secret_headers name their source, not the value).
_SPECS_IN_PROCESS: dict[str, DrillSpec] = {}


class DrillSession:
    def __init__(self, spec: DrillSpec, run: EvidenceRun):
        self.spec = spec
        self.run = run
        self.journal = CompensationJournal(self._persist_compensations, self._load_compensations())

    @classmethod
    def create(cls, spec: DrillSpec, spec_text: str | None = None) -> "DrillSession":
        run = Archive(spec.evidence.dir).new_run(spec.name)
        text = spec_text if spec_text is not None else yaml.safe_dump(spec.model_dump(mode="json", by_alias=True), sort_keys=False)
        run.write_text(SPEC_FILE, text)
        session = cls(spec, run)
        _SPECS_IN_PROCESS[str(run.path.resolve())] = spec
        from livedrill.stages.recovery import claim

        claim(run)
        session.event("livedrill", "run-created", run_id=run.run_id)
        return session

    @classmethod
    def reopen(cls, run_dir: str | Path) -> "DrillSession":
        run_dir = Path(run_dir)
        run = Archive(run_dir.parent).find(run_dir.name)
        spec = _SPECS_IN_PROCESS.get(str(run.path.resolve()))
        if spec is None:
            spec = parse_spec((run.path / SPEC_FILE).read_text(encoding="utf-8"), source=str(run.path / SPEC_FILE))
        return cls(spec, run)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    # ------------------------------------------------------------ records

    def event(self, source: str, kind: str, /, **detail: Any) -> TimelineEvent:
        record = TimelineEvent(at=utcnow(), monotonic=time.monotonic(), source=source, kind=kind, detail=detail)
        self.emit(record)
        return record

    def emit(self, record: TimelineEvent) -> None:
        self.run.append_jsonl(TIMELINE_FILE, record)

    def timeline(self) -> list[TimelineEvent]:
        path = self.run.path / TIMELINE_FILE
        if not path.exists():
            return []
        return [TimelineEvent.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def _persist_compensations(self, entries: list[Compensation]) -> None:
        self.run.write_json(COMPENSATIONS_FILE, [e.model_dump(mode="json") for e in entries])

    def _load_compensations(self) -> list[Compensation]:
        path = self.run.path / COMPENSATIONS_FILE
        if not path.exists():
            return []
        return [Compensation.model_validate(e) for e in json.loads(path.read_text(encoding="utf-8"))]

    # ------------------------------------------------------------ platform

    def signer(self) -> Signer:
        evidence = self.spec.evidence
        if evidence.generate_lab_key and evidence.signing_key is not None:
            return ensure_lab_key(evidence.signing_key)
        return load_signer(evidence.signing_key)

    def adapter(self) -> PlatformAdapter:
        """The adapter of the spec's platform kind, as its package registered it."""
        context = AdapterContext(run_id=self.run_id, budgets=self.spec.budgets, emit=self.emit, metrics=self.spec.metrics)
        return registry.open_adapter(self.spec.platform, context)


def operator() -> str:
    """Who ran the drill, as the process sees it (the approval names the human)."""
    return os.environ.get("LIVEDRILL_OPERATOR") or os.environ.get("USER") or f"uid:{os.getuid()}"
