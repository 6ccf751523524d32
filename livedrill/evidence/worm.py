"""Sealing runs into the WORM archive on object storage, from any number of processes and hosts at once.

A seal: upload the run's files (locked), publish the signing key (locked), then claim the next chain
position with the signed manifest (store.py explains the claims bucket), then write the manifest, its
signature and the chain entry (locked) and mark the local run sealed. Before claiming, the claim is also
written to a local intent file, so a process that dies between its claim and the end finishes the same
seal when the run is sealed again (`livedrill recover`), instead of claiming a second position.
A claim whose sealer died is finished by the next seal that finds it on top of the chain, or by
`livedrill evidence sync`: the claim holds everything needed, and its files were uploaded before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from livedrill.errors import PlatformError
from livedrill.evidence.archive import Archive, EvidenceError, EvidenceRun, RunSealedError, chain_entry
from livedrill.evidence.atomic import atomic_write_bytes
from livedrill.evidence.keys import Signer
from livedrill.evidence.manifest import (
    KEYS_DIR, MANIFEST_NAME, NOT_IN_MANIFEST, SIGNATURE_NAME, TIMESTAMP_NAME, UNSEALED_NAME, ChainLink, Manifest, sha256_bytes)
from livedrill.evidence.store import RUNS, Claim, ObjectStore, claim_for
from livedrill.evidence.store_config import ObjectStoreConfig
from livedrill.evidence.trust import append_witness, witnessed

# Hidden folder of the local archive (not a run id, so verification and listings skip it).
INTENTS_DIR = ".store-intents"
_UPLOAD_WORKERS = 8
_HEAD_HINT = "head"


class StoreUnavailable(EvidenceError):
    """The store could not be reached: the run stays unsealed locally (its verdict stands) until sealed again."""


def _intent_path(archive: Archive, run_id: str) -> Path:
    return archive.root / INTENTS_DIR / f"{run_id}.json"


def _read_intent(archive: Archive, run_id: str) -> Claim | None:
    try:
        return Claim.model_validate_json(_intent_path(archive, run_id).read_bytes())
    except FileNotFoundError:
        return None


def _head_hint(archive: Archive) -> int:
    try:
        return int((archive.root / INTENTS_DIR / _HEAD_HINT).read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _upload_files(run: EvidenceRun, store: ObjectStore) -> dict[str, str]:
    """Every data file of the run, locked in the store; path -> sha256 of the bytes uploaded."""
    def upload(path: Path) -> tuple[str, str]:
        rel = path.relative_to(run.path).as_posix()
        data = path.read_bytes()
        store.put_locked(store.run_key(run.run_id, rel), data)
        return rel, sha256_bytes(data)

    files = [p for p in sorted(run.path.rglob("*")) if p.is_file() and p.relative_to(run.path).as_posix() not in
             NOT_IN_MANIFEST and not any(part.startswith(".") for part in p.relative_to(run.path).parts)]
    with ThreadPoolExecutor(_UPLOAD_WORKERS) as pool:  # a run is ~15 small files: the store's latency, not bandwidth, dominates
        return dict(pool.map(upload, files))


def _publish_key(store: ObjectStore, signer: Signer) -> None:
    key = store.key(KEYS_DIR, f"{signer.key_id}.pub")
    pem = signer.public_key_pem()
    if store.exists(key):
        if store.get_locked(key).body != pem:
            raise EvidenceError(f"{store.config.url}/{KEYS_DIR}/{signer.key_id}.pub holds a different public key than signer {signer.key_id}")
        return
    store.put_locked(key, pem)


def complete_claim(store: ObjectStore, claim: Claim) -> None:
    """Write the manifest, signature and chain entry a claim stands for (again, harmlessly, if already written)."""
    manifest_bytes = claim.manifest_bytes()
    store.put_locked(store.run_key(claim.run_id, MANIFEST_NAME), manifest_bytes)
    store.put_locked(store.run_key(claim.run_id, SIGNATURE_NAME), claim.signature_bytes())
    entry = chain_entry(Manifest.from_bytes(manifest_bytes), manifest_bytes)
    store.put_locked(store.chain_key(claim.sequence), entry.to_line().encode())


def _match_claimed_files(run: EvidenceRun, store: ObjectStore, manifest: Manifest) -> None:
    """Bring the local run to the state its claim sealed, when something wrote to it after the claim (a recovery's
    own events): changed files get the sealed bytes back from the store, files the manifest does not list are
    moved beside the intents (kept, outside the sealed run)."""
    listed = {entry.path: entry.sha256 for entry in manifest.files}
    for path in sorted(p for p in run.path.rglob("*") if p.is_file()):
        rel = path.relative_to(run.path).as_posix()
        if rel in NOT_IN_MANIFEST:
            continue
        if rel not in listed:
            aside = run.archive.root / INTENTS_DIR / f"{run.run_id}.after-seal" / rel
            aside.parent.mkdir(parents=True, exist_ok=True)
            path.replace(aside)
        elif sha256_bytes(path.read_bytes()) != listed[rel]:
            key = store.run_key(run.run_id, rel)
            for version in store.versions(f"{RUNS}/{run.run_id}/{rel}"):
                body = store.get_locked(key, version.version_id).body if version.key == key and not version.is_delete_marker else None
                if body is not None and sha256_bytes(body) == listed[rel]:
                    atomic_write_bytes(path, body)
                    break
            else:
                raise EvidenceError(f"run {run.run_id}: {rel} differs from its sealed version and the store has no copy of it")


def _finish(run: EvidenceRun, store: ObjectStore, claim: Claim, witness: Path | None) -> Manifest:
    complete_claim(store, claim)
    manifest_bytes = claim.manifest_bytes()
    manifest = Manifest.from_bytes(manifest_bytes)
    if (run.path / UNSEALED_NAME).exists():
        _match_claimed_files(run, store, manifest)
        run.finish_seal(manifest_bytes, claim.signature_bytes())
    entry = chain_entry(manifest, manifest_bytes)
    if witness is not None and not witnessed(witness, entry):
        append_witness(witness, entry)
    atomic_write_bytes(run.archive.root / INTENTS_DIR / _HEAD_HINT, str(claim.sequence).encode())
    _intent_path(run.archive, run.run_id).unlink(missing_ok=True)
    return manifest


def _top_of_chain(store: ObjectStore, hint: int) -> Claim | None:
    """The highest claim, finished first if its sealer stopped before writing its chain entry."""
    claimed = store.claimed_sequences(after=hint)
    head = claimed[-1] if claimed else hint
    if head == 0:
        return None
    top = store.read_claim(head)
    if top is None:  # a hint from another store, or one older than the claims bucket: list from the start
        return _top_of_chain(store, 0) if hint else None
    if not store.exists(store.chain_key(top.sequence)):
        complete_claim(store, top)
    return top


def seal_to_store(run: EvidenceRun, store: ObjectStore, signer: Signer, *, rotate_from: Signer | None = None,
                  revokes: Sequence[str] = (), witness: Path | None = None) -> Manifest:
    """Seal `run` into the store's chain; the local run gets the same manifest. Raises StoreUnavailable when unreachable."""
    if rotate_from is not None and rotate_from.key_id == signer.key_id:
        raise EvidenceError(f"key rotation from {signer.key_id} to itself")
    if not (run.path / UNSEALED_NAME).exists():
        raise RunSealedError(f"run {run.run_id} is already sealed (or was not created by livedrill)")
    try:
        return _seal(run, store, signer, rotate_from, revokes, witness)
    except PlatformError as exc:
        if exc.transient:
            raise StoreUnavailable(f"run {run.run_id} not sealed: {exc}; it stays unsealed in {run.archive.root} until "
                                   "`livedrill recover` or `livedrill evidence sync` seals it") from exc
        raise


def _seal(run: EvidenceRun, store: ObjectStore, signer: Signer, rotate_from: Signer | None, revokes: Sequence[str],
          witness: Path | None) -> Manifest:
    intent = _read_intent(run.archive, run.run_id)
    if intent is not None:
        held = store.read_claim(intent.sequence)
        if held is not None and held.manifest_sha256 == intent.manifest_sha256:
            return _finish(run, store, held, witness)  # this run's claim stands: only its last writes were missing
        _intent_path(run.archive, run.run_id).unlink()
    store.ensure_buckets()
    uploaded = _upload_files(run, store)
    _publish_key(store, signer)
    if rotate_from is not None:
        _publish_key(store, rotate_from)
    hint = _head_hint(run.archive)
    for _ in range(store.config.seal_attempts):
        top = _top_of_chain(store, hint)
        previous = ChainLink(run_id=top.run_id, manifest_sha256=top.manifest_sha256) if top else None
        sequence = top.sequence + 1 if top else 1
        manifest, data, signature = run.signed_manifest(sequence, previous, signer, rotate_from=rotate_from, revokes=revokes)
        if {f.path: f.sha256 for f in manifest.files} != uploaded:
            raise EvidenceError(f"run {run.run_id}: files changed while sealing; seal it again")
        claim = claim_for(sequence, run.run_id, sha256_bytes(data), data, signature)
        atomic_write_bytes(_intent_path(run.archive, run.run_id), claim.model_dump_json().encode())
        if store.claim(claim):
            return _finish(run, store, claim, witness)
        hint = sequence
    _intent_path(run.archive, run.run_id).unlink(missing_ok=True)
    raise StoreUnavailable(f"run {run.run_id}: no free chain position after {store.config.seal_attempts} tries "
                           "(evidence.store.seal_attempts); others are sealing: seal it again")


def sync_store(archive: Archive, store: ObjectStore) -> list[int]:
    """Finish every claimed position whose chain entry is missing (a sealer stopped part-way); the positions finished."""
    finished = []
    for sequence in store.claimed_sequences():
        if not store.exists(store.chain_key(sequence)):
            claim = store.read_claim(sequence)
            if claim is not None:
                local = archive.root / claim.run_id
                if local.is_dir() and (local / UNSEALED_NAME).exists():
                    _finish(EvidenceRun(archive, local), store, claim, None)
                else:
                    complete_claim(store, claim)
                finished.append(sequence)
    return finished


def seal_run(run: EvidenceRun, signer: Signer, store: ObjectStoreConfig | None, *, witness: Path | None = None) -> Manifest:
    """Seal into the spec's object store when it names one, else into the local archive's own chain."""
    if store is None:
        return run.seal(signer, witness=witness)
    return seal_to_store(run, ObjectStore(store), signer, witness=witness)


def publish_timestamp(run: EvidenceRun, store_config: ObjectStoreConfig) -> None:
    """Upload the run's MANIFEST.tsr (added after its seal) beside its sealed manifest, locked like it."""
    store = ObjectStore(store_config)
    try:
        store.put_locked(store.run_key(run.run_id, TIMESTAMP_NAME), (run.path / TIMESTAMP_NAME).read_bytes())
    except PlatformError as exc:
        if exc.transient:
            raise StoreUnavailable(f"run {run.run_id}: its timestamp is not in the store yet: {exc}") from exc
        raise


@dataclass(frozen=True)
class StoreReadiness:
    """Whether the WORM store can take a seal now: `problem` None when it can; `transient` when it did not answer."""

    url: str
    problem: str | None = None
    transient: bool = False


def store_readiness(config: ObjectStoreConfig) -> StoreReadiness:
    """Reach the store and make sure its buckets exist with Object Lock (creating them when missing), before a drill."""
    try:
        ObjectStore(config).ensure_buckets()
    except PlatformError as exc:
        return StoreReadiness(config.url, str(exc), exc.transient)
    except ValueError as exc:  # StoreInputError: credentials missing or unreadable
        return StoreReadiness(config.url, str(exc), False)
    return StoreReadiness(config.url)
