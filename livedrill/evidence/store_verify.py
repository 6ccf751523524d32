"""Verifying the WORM archive straight from the bucket, as an auditor with read access does.

Per key the sealed version is the oldest one; a later version with other bytes (an overwrite) or a delete
marker (a delete without VersionId) cannot change it, but each is reported: someone tried. Every sealed
version must still carry COMPLIANCE retention into the future. The sealed versions are then laid out as a
local archive (runs, keys, chain.jsonl in position order) and checked by the same verification as a
directory archive, so trust, anchors, witness and timestamps mean exactly the same here.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from livedrill.evidence.manifest import CHAIN_NAME, KEYS_DIR, MANIFEST_NAME, RUN_ID_RE, Manifest, sha256_bytes
from livedrill.evidence.problems import Problem
from livedrill.evidence.store import CHAIN, LOCK_MODE, RUNS, ObjectStore, StoredVersion
from livedrill.evidence.verify import TimestampPolicy, VerifyReport, verify_archive_report

# Objects are small (a run's files are KB to a few MB); a handful of parallel GETs hides the store's latency.
_DOWNLOAD_WORKERS = 8


def _histories(versions: Iterable[StoredVersion]) -> tuple[dict[str, list[StoredVersion]], list[Problem]]:
    """Each key's object versions oldest first, and a problem per key that has delete markers."""
    by_key: dict[str, list[StoredVersion]] = defaultdict(list)
    problems: list[Problem] = []
    for version in versions:
        if version.is_delete_marker:
            problems.append(Problem(code="store-delete-attempted", file=version.key,
                                    message=f"a delete marker was placed at {version.last_modified.isoformat()}; locked versions are kept"))
        else:
            by_key[version.key].append(version)
    return by_key, problems


def pick_sealed(history: list[StoredVersion], digest: Callable[[StoredVersion], str], expected_sha256: str | None) -> tuple[int, list[Problem]]:
    """Which version of a key is the sealed one, and a problem per later version with other content.

    The oldest version, or for a run's file the oldest whose bytes have the manifest's hash: a seal that
    failed part-way and was repeated may have uploaded an earlier state of the file first.
    """
    chosen = 0
    if expected_sha256 is not None:
        for index, version in enumerate(history):
            if digest(version) == expected_sha256:
                chosen = index
                break
    problems = [
        Problem(code="store-overwritten", file=later.key, expected=history[chosen].etag, actual=later.etag,
                message=f"a later version with other content was written at {later.last_modified.isoformat()}; the sealed version is the one verified")
        for later in history[chosen + 1:] if later.etag != history[chosen].etag
    ]
    return chosen, problems


def _local_path(store: ObjectStore, key: str, root: Path) -> Path | None:
    """Where a bucket key goes in the local archive layout (None: not part of the archive)."""
    rel = PurePosixPath(key[len(store.key()) + 1:] if store.config.prefix else key)
    if len(rel.parts) >= 3 and rel.parts[0] == RUNS and RUN_ID_RE.match(rel.parts[1]):
        return root.joinpath(*rel.parts[1:])
    if len(rel.parts) == 2 and rel.parts[0] == KEYS_DIR:
        return root / KEYS_DIR / rel.parts[1]
    return None


@dataclass(frozen=True)
class _Fetched:
    """What is kept of one downloaded version: its hash and its lock (the bytes go straight to disk)."""

    sha256: str
    lock_mode: str | None
    retain_until: datetime | None


def _chain_position(key: str, chain_prefix: str) -> int | None:
    name = key[len(chain_prefix):] if key.startswith(chain_prefix) else ""
    return int(name[:-5]) if name.endswith(".json") and name[:-5].isdigit() else None


def download_sealed(store: ObjectStore, root: Path) -> list[Problem]:
    """Lay the bucket's sealed versions out in `root` as a directory archive (runs, keys, chain.jsonl in position
    order); the problems only the store can show (overwrites, delete markers, missing locks, unfinished seals).
    Each object's bytes are written to disk as they arrive: memory holds hashes, not the archive."""
    histories, problems = _histories(store.versions())
    now = datetime.now(timezone.utc)
    chain_prefix = store.key(CHAIN) + "/"
    chain_lines: dict[int, bytes] = {}
    seen: dict[tuple[str, str], _Fetched] = {}

    def fetch(version: StoredVersion, *, place: bool) -> _Fetched:
        got = store.get_locked(version.key, version.version_id)
        if place:
            position = _chain_position(version.key, chain_prefix)
            target = _local_path(store, version.key, root)
            if position is not None:
                chain_lines[position] = got.body
            elif target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(got.body)
        fetched = seen[(version.key, version.version_id)] = _Fetched(sha256_bytes(got.body), got.lock_mode, got.retain_until)
        return fetched

    def digest(version: StoredVersion) -> str:
        known = seen.get((version.key, version.version_id))
        return (known or fetch(version, place=False)).sha256

    with ThreadPoolExecutor(_DOWNLOAD_WORKERS) as pool:  # the oldest version of every key, in parallel
        list(pool.map(lambda history: fetch(history[0], place=True), histories.values()))
    expected = _manifest_hashes(store, root)
    for key, history in sorted(histories.items()):
        if _chain_position(key, chain_prefix) is None and _local_path(store, key, root) is None:
            problems.append(Problem(code="store-stray-object", file=key, message="object outside the archive layout"))
            continue
        chosen, found = pick_sealed(history, digest, expected.get(key))
        problems.extend(found)
        if chosen:  # an earlier upload of a retried seal came first: the sealed bytes replace it
            fetch(history[chosen], place=True)
        sealed = seen[(key, history[chosen].version_id)]
        if sealed.lock_mode != LOCK_MODE or sealed.retain_until is None or sealed.retain_until <= now:
            problems.append(Problem(code="store-not-locked", file=key, message="sealed version is not under COMPLIANCE retention",
                                    expected=f"{LOCK_MODE} until a future date",
                                    actual=f"{sealed.lock_mode} until {sealed.retain_until.isoformat() if sealed.retain_until else 'never'}"))
    (root / CHAIN_NAME).write_bytes(b"".join(chain_lines[s] for s in sorted(chain_lines)))
    for sequence in store.claimed_sequences():
        if sequence not in chain_lines:
            claim = store.read_claim(sequence)
            problems.append(Problem(code="store-seal-unfinished", run_id=claim.run_id if claim else None, file=store.claim_key(sequence),
                                    message=f"position {sequence} is claimed but its chain entry is missing: run `livedrill evidence sync`"))
    return problems


def verify_store_report(
    store: ObjectStore,
    *,
    quarter: str | None = None,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
    anchors: Sequence[str] = (),
    witness: Path | None = None,
    timestamps: TimestampPolicy | None = None,
) -> VerifyReport:
    """`verify_archive_report` of the bucket's sealed versions, with the store's own problems first."""
    with tempfile.TemporaryDirectory(prefix="livedrill-store-verify-") as tmp:
        problems = download_sealed(store, Path(tmp))
        report = verify_archive_report(Path(tmp), quarter=quarter, trusted_keys=trusted_keys, anchors=anchors, witness=witness,
                                       timestamps=timestamps)
    return report.model_copy(update={"target": store.config.url, "problems": [*problems, *report.problems]})


def _manifest_hashes(store: ObjectStore, root: Path) -> dict[str, str]:
    """Bucket key -> sha256 its run's (oldest, already downloaded) MANIFEST.json lists for it."""
    expected: dict[str, str] = {}
    for path in root.glob(f"*/{MANIFEST_NAME}"):
        try:
            manifest = Manifest.from_bytes(path.read_bytes())
        except ValueError:
            continue  # the directory verification reports an unreadable manifest
        for entry in manifest.files:
            expected[store.run_key(path.parent.name, entry.path)] = entry.sha256
    return expected
