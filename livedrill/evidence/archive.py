"""The evidence archive: one directory per drill run, sealed into a signed hash chain.

Layout of `<root>`:
  <run_id>/            the run's evidence; `UNSEALED` until sealed, then MANIFEST.json + MANIFEST.sig
  chain.jsonl          seal order: one ChainEntry per sealed run, rewritten atomically at each seal
  keys/<key id>.pub    every public key that signed a manifest (PEM)
  .lock                serialises seals, so two runs never claim the same place in the chain
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from livedrill.evidence.atomic import atomic_write_bytes, fsync_dir
from livedrill.evidence.keys import Signer
from livedrill.evidence.manifest import (
    CHAIN_NAME,
    KEYS_DIR,
    MANIFEST_NAME,
    NOT_IN_MANIFEST,
    RUN_ID_RE,
    SIGNATURE_NAME,
    TIMESTAMP_NAME,
    UNSEALED_NAME,
    ChainEntry,
    ChainLink,
    FileEntry,
    KeyRotation,
    Manifest,
    sha256_bytes,
    sha256_file,
)
from livedrill.evidence.redact import redact, redact_text
from livedrill.evidence.trust import append_witness, rotation_statement, witnessed

if TYPE_CHECKING:
    from livedrill.evidence.timestamp import TimestampAuthority

# A seal hashes one run (a few MB); waiting longer than this means the other sealer is stuck.
DEFAULT_SEAL_LOCK_TIMEOUT_S = 120.0
_LOCK_POLL_S = 0.05


class EvidenceError(Exception):
    """The archive refuses an operation (bad path, sealed run, unreadable chain)."""


class RunSealedError(EvidenceError):
    """A write or seal on a run that is already sealed."""


def _drill_slug(drill_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", drill_name.lower()).strip("-")
    if not slug:
        raise EvidenceError(f"drill name {drill_name!r} has no letters or digits to name a run with")
    return slug[:63]


def _utc_stamp(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class EvidenceRun:
    """One drill's evidence directory. Writes are redacted and atomic; a sealed run refuses writes."""

    def __init__(self, archive: "Archive", path: Path) -> None:
        self.archive = archive
        self.path = path
        self.run_id = path.name

    def __repr__(self) -> str:
        return f"EvidenceRun({self.run_id}, sealed={self.sealed})"

    @property
    def sealed(self) -> bool:
        return (self.path / MANIFEST_NAME).exists() and not (self.path / UNSEALED_NAME).exists()

    def manifest(self) -> Manifest | None:
        try:
            return Manifest.from_bytes((self.path / MANIFEST_NAME).read_bytes())
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------ writing

    def _target(self, relpath: str) -> Path:
        rel = PurePosixPath(relpath)
        if rel.is_absolute() or not rel.parts or any(part in ("..", ".") for part in rel.parts):
            raise EvidenceError(f"{relpath!r}: evidence paths are relative to the run directory, without . or ..")
        if rel.parts[0] in NOT_IN_MANIFEST:
            raise EvidenceError(f"{relpath!r} is reserved for sealing")
        if any(part.startswith(".") for part in rel.parts):
            raise EvidenceError(f"{relpath!r}: hidden names are reserved for in-progress writes")
        if not (self.path / UNSEALED_NAME).exists():
            raise RunSealedError(f"run {self.run_id} is sealed: its evidence can no longer change")
        return self.path.joinpath(*rel.parts)

    def write_bytes(self, relpath: str, data: bytes) -> Path:
        """Binary evidence, written as is (not redacted: use write_text/write_json for anything textual)."""
        return atomic_write_bytes(self._target(relpath), data)

    def write_text(self, relpath: str, text: str) -> Path:
        return atomic_write_bytes(self._target(relpath), redact_text(text).encode())

    def write_json(self, relpath: str, obj: Any) -> Path:
        data = json.dumps(redact(obj), indent=2, ensure_ascii=False) + "\n"
        return atomic_write_bytes(self._target(relpath), data.encode())

    def append_jsonl(self, relpath: str, obj: Any) -> Path:
        """Append one redacted JSON line and force it to disk, so a crash loses at most the line being written."""
        path = self._target(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(redact(obj), ensure_ascii=False, separators=(",", ":")) + "\n"
        created = not path.exists()
        with path.open("ab") as f:
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        if created:
            fsync_dir(path.parent)
        return path

    def stream_path(self, relpath: str) -> Path:
        """A path inside the run for a writer that streams its own file (probe series); parents are created."""
        path = self._target(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------ sealing

    def _collect_files(self) -> list[FileEntry]:
        entries: list[FileEntry] = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            base = Path(dirpath)
            for name in sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]:
                path = base / name
                rel = path.relative_to(self.path).as_posix()
                if rel in NOT_IN_MANIFEST:
                    continue
                mode = path.lstat().st_mode
                if not stat.S_ISREG(mode):
                    raise EvidenceError(f"run {self.run_id}: {rel} is not a regular file (symlink or device): refusing to seal")
                entries.append(FileEntry(path=rel, sha256=sha256_file(path), size=path.stat().st_size))
        entries.sort(key=lambda e: e.path)
        return entries

    def seal(self, signer: Signer, *, rotate_from: Signer | None = None, revokes: Sequence[str] = (), witness: Path | None = None) -> Manifest:
        """Hash every file, chain to the previously sealed run, sign, and remove the UNSEALED marker.

        rotate_from: the key that signed until now; it endorses `signer` in this manifest, so an auditor
        who pinned it trusts `signer` from here on. revokes: key ids refused for every later run.
        witness: a file outside the archive that gets the new chain head appended (`verify --witness`).
        Safe to call again after a crash part-way: a run already in the chain is only finished off.
        """
        if rotate_from is not None and rotate_from.key_id == signer.key_id:
            raise EvidenceError(f"key rotation from {signer.key_id} to itself")
        with self.archive._seal_lock():
            marker = self.path / UNSEALED_NAME
            if not marker.exists():
                raise RunSealedError(f"run {self.run_id} is already sealed (or was not created by livedrill)")
            chain = self.archive.chain()
            for entry in chain:
                if entry.run_id == self.run_id:  # crashed after the chain update: finish the seal
                    manifest_bytes = (self.path / MANIFEST_NAME).read_bytes()
                    if sha256_bytes(manifest_bytes) != entry.manifest_sha256:
                        raise EvidenceError(f"run {self.run_id} is in the chain but its MANIFEST.json differs from the chain entry")
                    if witness is not None and not witnessed(witness, entry):
                        append_witness(witness, entry)
                    self._remove_marker(marker)
                    return Manifest.from_bytes(manifest_bytes)
            previous = ChainLink(run_id=chain[-1].run_id, manifest_sha256=chain[-1].manifest_sha256) if chain else None
            self.archive.publish_key(signer)
            if rotate_from is not None:
                self.archive.publish_key(rotate_from)
            manifest, data, signature = self.signed_manifest(len(chain) + 1, previous, signer, rotate_from=rotate_from, revokes=revokes)
            atomic_write_bytes(self.path / MANIFEST_NAME, data)
            atomic_write_bytes(self.path / SIGNATURE_NAME, signature)
            entry = chain_entry(manifest, data)
            self.archive._write_chain([*chain, entry])
            if witness is not None:
                append_witness(witness, entry)
            self._remove_marker(marker)
            return manifest

    def signed_manifest(
        self, sequence: int, previous: ChainLink | None, signer: Signer, *, rotate_from: Signer | None = None, revokes: Sequence[str] = ()
    ) -> tuple[Manifest, bytes, bytes]:
        """The manifest of this run's files at chain position `sequence`, its bytes and `signer`'s signature over them."""
        manifest = Manifest(
            run_id=self.run_id,
            sealed_at=datetime.now(timezone.utc),
            sequence=sequence,
            previous=previous,
            key_id=signer.key_id,
            files=self._collect_files(),
            rotation=_rotation(rotate_from, signer),
            revokes=list(revokes),
        )
        data = manifest.to_bytes()
        return manifest, data, signer.sign(data)

    def finish_seal(self, manifest_bytes: bytes, signature: bytes) -> None:
        """Store a manifest sealed elsewhere (the object store's chain) beside the files and drop the UNSEALED marker."""
        marker = self.path / UNSEALED_NAME
        if not marker.exists():
            raise RunSealedError(f"run {self.run_id} is already sealed (or was not created by livedrill)")
        atomic_write_bytes(self.path / MANIFEST_NAME, manifest_bytes)
        atomic_write_bytes(self.path / SIGNATURE_NAME, signature)
        self._remove_marker(marker)

    def timestamp(self, tsa: "TimestampAuthority") -> datetime:
        """Get an RFC 3161 timestamp of the sealed manifest from `tsa` and store it as MANIFEST.tsr; returns the TSA time.

        Separate from `seal` so a drill is sealed even while the TSA is unreachable, and stamped later.
        """
        from livedrill.evidence.timestamp import request_timestamp  # optional dependency: rfc3161-client

        if not self.sealed:
            raise EvidenceError(f"run {self.run_id} is not sealed: only a sealed manifest is timestamped")
        token = request_timestamp((self.path / MANIFEST_NAME).read_bytes(), tsa)
        atomic_write_bytes(self.path / TIMESTAMP_NAME, token)
        from rfc3161_client import decode_timestamp_response

        return decode_timestamp_response(token).tst_info.gen_time

    def _remove_marker(self, marker: Path) -> None:
        marker.unlink()
        fsync_dir(self.path)


def chain_entry(manifest: Manifest, manifest_bytes: bytes) -> ChainEntry:
    return ChainEntry(sequence=manifest.sequence, run_id=manifest.run_id, manifest_sha256=sha256_bytes(manifest_bytes), sealed_at=manifest.sealed_at)


def _rotation(previous: Signer | None, new: Signer) -> KeyRotation | None:
    if previous is None:
        return None
    endorsement = previous.sign(rotation_statement(previous.key_id, new.key_id))
    return KeyRotation(previous_key_id=previous.key_id, endorsement=base64.b64encode(endorsement).decode())


class Archive:
    """A directory of evidence runs chained in seal order."""

    def __init__(self, root: Path, *, lock_timeout_s: float = DEFAULT_SEAL_LOCK_TIMEOUT_S) -> None:
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s
        self.root.mkdir(parents=True, exist_ok=True)

    def new_run(self, drill_name: str, *, now: datetime | None = None) -> EvidenceRun:
        """Create `<root>/<UTC stamp>-<drill>-<6 hex>/` marked UNSEALED."""
        stamp = _utc_stamp(now or datetime.now(timezone.utc))
        slug = _drill_slug(drill_name)
        while True:
            path = self.root / f"{stamp}-{slug}-{secrets.token_hex(3)}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            break
        atomic_write_bytes(
            path / UNSEALED_NAME,
            f"This run is not sealed: its files are not yet protected by a signed manifest.\ncreated_at: {stamp}\n".encode(),
        )
        fsync_dir(self.root)
        return EvidenceRun(self, path)

    def runs(self) -> list[EvidenceRun]:
        """Every run directory, oldest first (run ids start with their UTC creation time)."""
        return [
            EvidenceRun(self, p) for p in sorted(self.root.iterdir()) if p.is_dir() and not p.is_symlink() and RUN_ID_RE.match(p.name)
        ]

    def find(self, run_id: str) -> EvidenceRun:
        path = self.root / run_id
        if not RUN_ID_RE.match(run_id) or not path.is_dir():
            raise EvidenceError(f"no run {run_id!r} in archive {self.root}")
        return EvidenceRun(self, path)

    def unsealed_runs(self) -> list[EvidenceRun]:
        return [r for r in self.runs() if (r.path / UNSEALED_NAME).exists()]

    def chain(self) -> list[ChainEntry]:
        """The seal order recorded in chain.jsonl (empty for a new archive)."""
        try:
            text = (self.root / CHAIN_NAME).read_text()
        except FileNotFoundError:
            return []
        try:
            return [ChainEntry.model_validate_json(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise EvidenceError(f"{self.root / CHAIN_NAME} is unreadable ({exc}); run `livedrill evidence verify`") from exc

    def timestamp_unstamped(self, tsa: "TimestampAuthority") -> dict[str, str]:
        """Timestamp every sealed run without MANIFEST.tsr (after a TSA outage); run id -> TSA time or the error."""
        from livedrill.evidence.timestamp import TimestampError

        done: dict[str, str] = {}
        for run in self.runs():
            if run.sealed and not (run.path / TIMESTAMP_NAME).exists():
                try:
                    done[run.run_id] = run.timestamp(tsa).isoformat()
                except TimestampError as exc:
                    done[run.run_id] = f"error: {exc}"
        return done

    def publish_key(self, signer: Signer) -> Path:
        """Write keys/<key id>.pub once; refuse if a different key already sits under that name."""
        path = self.root / KEYS_DIR / f"{signer.key_id}.pub"
        pem = signer.public_key_pem()
        if path.exists():
            if path.read_bytes() != pem:
                raise EvidenceError(f"{path} holds a different public key than signer {signer.key_id}")
            return path
        return atomic_write_bytes(path, pem)

    def _write_chain(self, entries: list[ChainEntry]) -> None:
        atomic_write_bytes(self.root / CHAIN_NAME, "".join(e.to_line() for e in entries).encode())

    @contextlib.contextmanager
    def _seal_lock(self) -> Iterator[None]:
        deadline = time.monotonic() + self.lock_timeout_s
        with open(self.root / ".lock", "a+b") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EvidenceError(
                            f"{self.root}: another process has been sealing for over {self.lock_timeout_s:g} s"
                        ) from None
                    time.sleep(_LOCK_POLL_S)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
