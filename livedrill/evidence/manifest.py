"""The sealed record of one run (MANIFEST.json) and the archive's seal-order index (chain.jsonl).

A run's chain hash is the SHA-256 of its MANIFEST.json bytes as stored. Each manifest names the
previous sealed run and that run's chain hash, and is signed, so changing, removing or reordering
any earlier run breaks a signed link after it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import Field

from livedrill.outcomes import Record

MANIFEST_FORMAT = "livedrill-evidence-manifest/1"
MANIFEST_NAME = "MANIFEST.json"
SIGNATURE_NAME = "MANIFEST.sig"
UNSEALED_NAME = "UNSEALED"
TIMESTAMP_NAME = "MANIFEST.tsr"  # RFC 3161 reply over MANIFEST.json, optional, may be added after sealing
CHAIN_NAME = "chain.jsonl"
KEYS_DIR = "keys"
# Files of a run directory that the manifest cannot list: itself, its signature and timestamp, the unsealed marker.
NOT_IN_MANIFEST = frozenset({MANIFEST_NAME, SIGNATURE_NAME, TIMESTAMP_NAME, UNSEALED_NAME})

RUN_ID_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<drill>[a-z0-9][a-z0-9-]*)-(?P<nonce>[0-9a-f]{6})$")
_SHA256_HEX = r"^[0-9a-f]{64}$"


class FileEntry(Record):
    path: str = Field(description="POSIX path relative to the run directory")
    sha256: str = Field(pattern=_SHA256_HEX)
    size: int = Field(ge=0)


class ChainLink(Record):
    run_id: str
    manifest_sha256: str = Field(pattern=_SHA256_HEX)


class KeyRotation(Record):
    """Admits the manifest's signing key: the previous key's signature over trust.rotation_statement(previous, new)."""

    previous_key_id: str
    endorsement: str = Field(description="base64 of the previous key's raw Ed25519 signature")


class Manifest(Record):
    format: Literal["livedrill-evidence-manifest/1"] = MANIFEST_FORMAT
    run_id: str
    sealed_at: datetime
    sequence: int = Field(ge=1, description="Position in the archive's seal order, from 1")
    previous: ChainLink | None = Field(description="The run sealed just before this one; null for the first")
    key_id: str
    files: list[FileEntry]
    rotation: KeyRotation | None = Field(default=None, description="Set on the first run a new key signs")
    revokes: list[str] = Field(default_factory=list, description="Key ids refused for every run sealed after this one")

    def to_bytes(self) -> bytes:
        doc = self.model_dump(mode="json")
        # Left out when unused, so a manifest without rotation or revocation keeps the format sealed before they existed.
        if doc["rotation"] is None:
            del doc["rotation"]
        if not doc["revokes"]:
            del doc["revokes"]
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        return cls.model_validate_json(data)


class ChainEntry(Record):
    sequence: int = Field(ge=1)
    run_id: str
    manifest_sha256: str = Field(pattern=_SHA256_HEX)
    sealed_at: datetime

    def to_line(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")) + "\n"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def run_started_at(run_id: str) -> datetime | None:
    """The UTC creation time encoded in a run id, or None if it is not a run id."""
    match = RUN_ID_RE.match(run_id)
    if not match:
        return None
    return datetime.strptime(match.group("stamp"), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


_QUARTER_RE = re.compile(r"^(?P<year>\d{4})Q(?P<q>[1-4])$")


def parse_quarter(quarter: str) -> tuple[int, int]:
    match = _QUARTER_RE.match(quarter)
    if not match:
        raise ValueError(f"{quarter!r} is not a quarter like 2026Q4")
    return int(match.group("year")), int(match.group("q"))


def in_quarter(run_id: str, quarter: str) -> bool:
    year, q = parse_quarter(quarter)
    started = run_started_at(run_id)
    return started is not None and started.year == year and (started.month - 1) // 3 + 1 == q
