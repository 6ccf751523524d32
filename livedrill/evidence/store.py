"""The WORM evidence archive on S3 object storage with Object Lock: the client and its key layout.

Layout (PREFIX/ omitted when empty), every object written once with COMPLIANCE retention:
  bucket  PREFIX/runs/<run_id>/<file>        a sealed run's files, its MANIFEST.json and MANIFEST.sig
          PREFIX/keys/<key id>.pub           every public key that signed a manifest
          PREFIX/chain/<sequence:010d>.json  the chain entry at that position
  claims  PREFIX/claims/<sequence:010d>      the one manifest (and signature) that holds that position

Why a second bucket: in an Object Lock bucket versioning is always on, and an S3 store may then ignore
`If-None-Match: *` (Ceph Pacific writes a new version and answers 200), so two sealers could both take
position N. The claims bucket has no versioning, where the conditional create is atomic: the first sealer
to create `claims/N` holds position N, every other one gets 412 and tries N+1. A claim carries the whole
signed manifest, so a seal interrupted after its claim is finished by whoever sees it next.
Overwrites and deletes of locked objects: S3 keeps the locked version (a delete makes a marker, a PUT a
new version), so "sealed" means the oldest version of a key, read by its VersionId.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from livedrill.errors import PlatformError, PlatformUnreachable, RetryPolicy, call_with_retry
from livedrill.evidence.store_config import ObjectStoreConfig, load_credentials
from livedrill.outcomes import Record

RUNS, KEYS, CHAIN, CLAIMS = "runs", "keys", "chain", "claims"
LOCK_MODE = "COMPLIANCE"


class StoreError(PlatformError):
    """The object store refused a request, or could not be reached after the configured attempts."""


class Claim(Record):
    """What `claims/N` holds: the sealed manifest at position N, its signature, and its data files' versions."""

    sequence: int
    run_id: str
    manifest_sha256: str
    manifest: str  # base64 of MANIFEST.json as signed
    signature: str  # base64 of MANIFEST.sig

    def manifest_bytes(self) -> bytes:
        return base64.b64decode(self.manifest)

    def signature_bytes(self) -> bytes:
        return base64.b64decode(self.signature)


@dataclass(frozen=True)
class StoredVersion:
    key: str
    version_id: str
    etag: str
    last_modified: datetime
    is_delete_marker: bool = False


@dataclass(frozen=True)
class LockedObject:
    body: bytes
    version_id: str
    lock_mode: str | None
    retain_until: datetime | None


def _sequence_key(sequence: int) -> str:
    return f"{sequence:010d}"


class ObjectStore:
    """One bucket pair of an S3 store. Each request has the config's timeout; transient failures are retried."""

    def __init__(self, config: ObjectStoreConfig) -> None:
        import boto3
        from botocore.config import Config

        credentials = load_credentials(config)
        self.config = config
        # Retries are ours (one classifier for the whole product); botocore's own are off. Checksums only where
        # S3 requires them: newer botocore adds CRC trailers by default that older S3 stores reject.
        self._client = boto3.client(
            "s3", endpoint_url=config.endpoint_url, region_name=config.region,
            aws_access_key_id=credentials.access_key, aws_secret_access_key=credentials.secret_key,
            config=Config(connect_timeout=config.request_timeout_s, read_timeout=config.request_timeout_s,
                          retries={"total_max_attempts": 1}, s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required", response_checksum_validation="when_required"),
        )
        self._policy = RetryPolicy(deadline_s=config.request_timeout_s * config.attempts)

    # ------------------------------------------------------------ keys

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.config.prefix, *parts) if p)

    def run_key(self, run_id: str, relpath: str) -> str:
        return self.key(RUNS, run_id, relpath)

    def chain_key(self, sequence: int) -> str:
        return self.key(CHAIN, f"{_sequence_key(sequence)}.json")

    def claim_key(self, sequence: int) -> str:
        return self.key(CLAIMS, _sequence_key(sequence))

    # ------------------------------------------------------------ calls

    def _call(self, describe: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        def once():
            try:
                return fn(**kwargs)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                code = exc.response.get("Error", {}).get("Code", "")
                raise StoreError(f"{describe}: {code or status} {exc.response.get('Error', {}).get('Message', '')}".rstrip(),
                                 status=status, reason=code) from exc
            except BotoCoreError as exc:  # connection refused or reset, timeouts: no answer at all
                raise PlatformUnreachable(f"{describe}: object store {self.config.endpoint_url} unreachable ({exc})") from exc

        return call_with_retry(once, self._policy, describe=describe)

    def ensure_buckets(self) -> None:
        """Create the Object Lock bucket and the claims bucket when missing; refuse a bucket without Object Lock."""
        for bucket, locked in ((self.config.bucket, True), (self.config.claims, False)):
            try:
                self._call(f"head bucket {bucket}", self._client.head_bucket, Bucket=bucket)
            except StoreError as exc:
                if exc.status != 404:
                    raise
                extra = {"ObjectLockEnabledForBucket": True} if locked else {}
                self._call(f"create bucket {bucket}", self._client.create_bucket, Bucket=bucket, **extra)
        try:
            lock = self._call(f"object lock of {self.config.bucket}", self._client.get_object_lock_configuration, Bucket=self.config.bucket)
        except StoreError as exc:
            raise StoreError(f"evidence.store.bucket {self.config.bucket}: Object Lock is not enabled ({exc}); "
                             "create the bucket with Object Lock", status=exc.status, transient=False) from exc
        if lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise StoreError(f"evidence.store.bucket {self.config.bucket}: Object Lock is not enabled", transient=False)

    def put_locked(self, key: str, body: bytes) -> str:
        """Write one object version under COMPLIANCE retention of `retention_days`; its VersionId."""
        retain_until = datetime.now(timezone.utc) + timedelta(days=self.config.retention_days)
        reply = self._call(f"put {key}", self._client.put_object, Bucket=self.config.bucket, Key=key, Body=body,
                           ObjectLockMode=LOCK_MODE, ObjectLockRetainUntilDate=retain_until)
        return reply.get("VersionId", "")

    def get_locked(self, key: str, version_id: str | None = None) -> LockedObject:
        extra = {"VersionId": version_id} if version_id else {}
        reply = self._call(f"get {key}", self._client.get_object, Bucket=self.config.bucket, Key=key, **extra)
        return LockedObject(body=reply["Body"].read(), version_id=reply.get("VersionId", ""),
                            lock_mode=reply.get("ObjectLockMode"), retain_until=reply.get("ObjectLockRetainUntilDate"))

    def exists(self, key: str) -> bool:
        try:
            self._call(f"head {key}", self._client.head_object, Bucket=self.config.bucket, Key=key)
            return True
        except StoreError as exc:
            if exc.status == 404:
                return False
            raise

    def claim(self, claim: Claim) -> bool:
        """Create claims/N if no one has: True if this call took position N, False if another sealer holds it."""
        try:
            self._call(f"claim position {claim.sequence}", self._client.put_object, Bucket=self.config.claims,
                       Key=self.claim_key(claim.sequence), Body=claim.model_dump_json().encode(), IfNoneMatch="*")
            return True
        except StoreError as exc:
            # 412: the key exists. 409: a concurrent conditional create of the same key is in progress.
            if exc.status in (409, 412):
                return False
            raise

    def read_claim(self, sequence: int) -> Claim | None:
        try:
            reply = self._call(f"read claim {sequence}", self._client.get_object, Bucket=self.config.claims, Key=self.claim_key(sequence))
        except StoreError as exc:
            if exc.status == 404:
                return None
            raise
        return Claim.model_validate_json(reply["Body"].read())

    def claimed_sequences(self, *, after: int = 0) -> list[int]:
        """Every claimed position above `after`, ascending (keys are zero-padded, so listing order is numeric)."""
        prefix = self.key(CLAIMS) + "/"
        found: list[int] = []
        kwargs = {"Bucket": self.config.claims, "Prefix": prefix, "StartAfter": prefix + _sequence_key(after)}
        while True:
            reply = self._call("list claims", self._client.list_objects_v2, **kwargs)
            found.extend(int(item["Key"].rsplit("/", 1)[1]) for item in reply.get("Contents", []))
            if not reply.get("IsTruncated"):
                return found
            kwargs["ContinuationToken"] = reply["NextContinuationToken"]

    def versions(self, under: str = "") -> Iterator[StoredVersion]:
        """Every object version and delete marker whose key starts with PREFIX/`under`, per key oldest first."""
        prefix = self.key(under) if under else (self.key() + "/" if self.config.prefix else "")
        kwargs = {"Bucket": self.config.bucket, "Prefix": prefix}
        while True:
            reply = self._call("list object versions", self._client.list_object_versions, **kwargs)
            batch = [StoredVersion(v["Key"], v["VersionId"], v.get("ETag", ""), v["LastModified"])
                     for v in reply.get("Versions", [])]
            batch += [StoredVersion(m["Key"], m["VersionId"], "", m["LastModified"], is_delete_marker=True)
                      for m in reply.get("DeleteMarkers", [])]
            # S3 lists a key's versions newest first; the sealed version is the oldest.
            yield from sorted(batch, key=lambda v: (v.key, v.last_modified))
            if not reply.get("IsTruncated"):
                return
            kwargs["KeyMarker"], kwargs["VersionIdMarker"] = reply["NextKeyMarker"], reply["NextVersionIdMarker"]

    def delete_version(self, key: str, version_id: str) -> None:
        """Try to delete one version (what an insider would do; the lock refuses it with 403)."""
        self._call(f"delete {key}", self._client.delete_object, Bucket=self.config.bucket, Key=key, VersionId=version_id)

    def put_plain(self, key: str, body: bytes) -> str:
        """An overwrite without a lock of its own (what an insider would do; S3 keeps the sealed version)."""
        return self._call(f"put {key}", self._client.put_object, Bucket=self.config.bucket, Key=key, Body=body).get("VersionId", "")


def claim_for(sequence: int, run_id: str, manifest_sha256: str, manifest_bytes: bytes, signature: bytes) -> Claim:
    return Claim(sequence=sequence, run_id=run_id, manifest_sha256=manifest_sha256,
                 manifest=base64.b64encode(manifest_bytes).decode(), signature=base64.b64encode(signature).decode())

