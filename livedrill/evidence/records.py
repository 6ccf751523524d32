"""Archive runs that hold one record instead of a drill (a programme's deficiencies and sign-offs, modelled in
livedrill.programme.records): sealed and chained like a drill, but never summarised as one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from livedrill.evidence.archive import Archive

RECORD_FILE = "programme-record.json"


def is_record_run(run_dir: Path) -> bool:
    return (Path(run_dir) / RECORD_FILE).exists()


def sealed_records(root: Path, quarter: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(run id, record as stored) of every sealed record run (about `quarter`, if given, whenever sealed)."""
    found = []
    for run in Archive(Path(root)).runs():
        if run.sealed and is_record_run(run.path):
            record = json.loads((run.path / RECORD_FILE).read_text(encoding="utf-8"))
            if quarter is None or record.get("quarter") == quarter:
                found.append((run.run_id, record))
    return found
