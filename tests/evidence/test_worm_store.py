"""The WORM archive on a real S3 store with Object Lock (Ceph RADOS Gateway, one node, started here)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.evidence.manifest import MANIFEST_NAME, UNSEALED_NAME, sha256_bytes
from livedrill.evidence.store import ObjectStore, StoreError, claim_for
from livedrill.evidence.store_config import ObjectStoreConfig
from livedrill.evidence.store_verify import verify_store_report
from livedrill.evidence.worm import INTENTS_DIR, StoreUnavailable, seal_to_store, sync_store
from livedrill.evidence.verify import TimestampPolicy
from tests.evidence.conftest import write_drill_evidence
from tests.evidence.test_timestamp import local_tsa  # noqa: F401 - a real OpenSSL TSA on a free port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rgw(tmp_path_factory):
    from livedrill_lab.objectstore import running_object_store

    with running_object_store(tmp_path_factory.mktemp("rgw")) as lab:
        yield lab


@pytest.fixture
def config(rgw) -> ObjectStoreConfig:
    """A fresh bucket pair per test on the shared store; credentials from a file, as a production spec names them."""
    return ObjectStoreConfig(endpoint_url=rgw.endpoint_url, bucket=f"ev-{uuid.uuid4().hex[:12]}", prefix="core-tier",
                             credentials_file=rgw.credentials_file(), request_timeout_s=10, attempts=3)


def _drill(archive: Archive, at: datetime | None = None):
    run = archive.new_run("lab-targeted", now=at)
    write_drill_evidence(run, series_bytes=4096)
    return run


def test_sealed_runs_are_locked_in_the_bucket_and_verify_from_it(tmp_path, config, signer):
    store = ObjectStore(config)
    archive = Archive(tmp_path / "staging")
    runs = [_drill(archive) for _ in range(3)]
    manifests = [seal_to_store(run, store, signer) for run in runs]

    assert [m.sequence for m in manifests] == [1, 2, 3]
    assert manifests[1].previous.run_id == runs[0].run_id
    for run in runs:  # the local copy carries the very manifest the store holds
        assert run.sealed
        assert store.get_locked(store.run_key(run.run_id, MANIFEST_NAME)).body == (run.path / MANIFEST_NAME).read_bytes()
    got = store.get_locked(store.run_key(runs[0].run_id, "verdict.json"))
    assert got.lock_mode == "COMPLIANCE"
    assert got.retain_until > datetime.now(timezone.utc) + timedelta(days=config.retention_days - 1)

    report = verify_store_report(store, trusted_keys=[signer.public_key])
    assert report.problems == []
    assert (report.runs_checked, report.origin, report.target) == (3, "established", "s3://" + config.bucket + "/core-tier")


def test_an_insider_cannot_delete_or_rewrite_sealed_evidence(tmp_path, config, signer):
    store = ObjectStore(config)
    run = _drill(Archive(tmp_path / "staging"))
    seal_to_store(run, store, signer)
    key = store.run_key(run.run_id, "verdict.json")
    sealed = next(v for v in store.versions(f"runs/{run.run_id}/verdict.json"))

    with pytest.raises(StoreError) as refused:
        store.delete_version(key, sealed.version_id)
    assert refused.value.status == 403
    store.put_plain(key, b'{"outcome": "passed", "rewritten": true}\n')  # S3 keeps both: a new version on top
    store._client.delete_object(Bucket=config.bucket, Key=store.run_key(run.run_id, "postcheck.json"))  # a delete marker

    report = verify_store_report(store, trusted_keys=[signer.public_key])
    codes = sorted(p.code for p in report.problems)
    assert codes == ["store-delete-attempted", "store-overwritten"]
    assert report.runs_checked == 1  # the sealed versions themselves still verify: no hash problem
    assert store.get_locked(key, sealed.version_id).body == (run.path / "verdict.json").read_bytes()


def test_a_bucket_without_object_lock_is_refused_by_name(rgw, tmp_path, signer):
    plain = ObjectStoreConfig(endpoint_url=rgw.endpoint_url, bucket=f"plain-{uuid.uuid4().hex[:8]}", credentials_file=rgw.credentials_file())
    store = ObjectStore(plain)
    store._client.create_bucket(Bucket=plain.bucket)
    run = _drill(Archive(tmp_path / "staging"))
    with pytest.raises(StoreError, match=f"evidence.store.bucket {plain.bucket}: Object Lock is not enabled"):
        seal_to_store(run, store, signer)
    assert (run.path / UNSEALED_NAME).exists()


def test_store_unreachable_leaves_the_run_unsealed_until_sealed_again(tmp_path, config, signer, rgw):
    store = ObjectStore(config)
    archive = Archive(tmp_path / "staging")
    seal_to_store(_drill(archive), store, signer)
    run = _drill(archive)
    rgw.stop_gateway()
    try:
        impatient = ObjectStore(config.model_copy(update={"request_timeout_s": 1.0, "attempts": 2}))
        with pytest.raises(StoreUnavailable, match="stays unsealed"):
            seal_to_store(run, impatient, signer)
        assert (run.path / UNSEALED_NAME).exists() and not (run.path / MANIFEST_NAME).exists()
    finally:
        rgw.start_gateway()
    run.write_json("postcheck.json", [{"name": "vm-running", "status": "pass", "message": "written after the outage"}])
    assert seal_to_store(run, store, signer).sequence == 2
    assert verify_store_report(store, trusted_keys=[signer.public_key]).problems == []


def test_a_seal_stopped_after_its_claim_is_finished_by_recovery_or_by_sync(tmp_path, config, signer):
    store = ObjectStore(config)
    archive = Archive(tmp_path / "staging")
    seal_to_store(_drill(archive), store, signer)
    store.ensure_buckets()

    def claim_then_die(run):  # what a process killed right after winning its claim leaves behind
        from livedrill.evidence.worm import _intent_path, _upload_files

        _upload_files(run, store)
        top = store.read_claim(max(store.claimed_sequences()))
        from livedrill.evidence.manifest import ChainLink

        manifest, data, signature = run.signed_manifest(top.sequence + 1, ChainLink(run_id=top.run_id, manifest_sha256=top.manifest_sha256), signer)
        claim = claim_for(manifest.sequence, run.run_id, sha256_bytes(data), data, signature)
        _intent_path(archive, run.run_id).parent.mkdir(exist_ok=True)
        _intent_path(archive, run.run_id).write_text(claim.model_dump_json())
        assert store.claim(claim)
        return claim

    recovered = _drill(archive)
    claim_then_die(recovered)
    unfinished = verify_store_report(store, trusted_keys=[signer.public_key])
    assert "store-seal-unfinished" in {p.code for p in unfinished.problems}
    # `livedrill recover` writes its own events before sealing again: the claimed state wins, the rest is kept aside.
    recovered.append_jsonl("timeline.jsonl", {"source": "livedrill", "kind": "recovery-started"})
    assert seal_to_store(recovered, store, signer).sequence == 2  # the same position, not a second one
    assert (archive.root / INTENTS_DIR).is_dir() and not (archive.root / INTENTS_DIR / f"{recovered.run_id}.json").exists()

    orphan = _drill(archive)
    claim_then_die(orphan)
    (archive.root / INTENTS_DIR / f"{orphan.run_id}.json").unlink()  # its host is gone: only the claim remains
    assert sync_store(Archive(tmp_path / "elsewhere"), store) == [3]
    next_run = _drill(archive)
    assert seal_to_store(next_run, store, signer).sequence == 4
    report = verify_store_report(store, trusted_keys=[signer.public_key])
    assert report.problems == [] and report.runs_checked == 4


def _seal_many(endpoint_url: str, bucket: str, credentials: str, staging: str, count: int, key_pem: bytes) -> list[int]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    config = ObjectStoreConfig(endpoint_url=endpoint_url, bucket=bucket, prefix="core-tier", credentials_file=Path(credentials))
    store, archive, signer = ObjectStore(config), Archive(Path(staging)), Signer(load_pem_private_key(key_pem, None))
    return [seal_to_store(_drill(archive), store, signer).sequence for _ in range(count)]


def test_two_hosts_sealing_at_once_build_one_gap_free_chain(tmp_path, config, signer):
    from cryptography.hazmat.primitives import serialization

    pem = signer._private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    per_process = 50
    context = multiprocessing.get_context("spawn")  # two independent processes, each with its own staging folder
    with context.Pool(2) as pool:
        results = pool.starmap(_seal_many, [(config.endpoint_url, config.bucket, str(config.credentials_file), str(tmp_path / f"host-{i}"),
                                             per_process, pem) for i in range(2)])
    positions = sorted(results[0] + results[1])
    assert positions == list(range(1, 2 * per_process + 1))
    report = verify_store_report(ObjectStore(config), trusted_keys=[signer.public_key])
    assert report.problems == [] and report.runs_checked == 2 * per_process


def test_auditor_verifies_the_bucket_from_the_command_line(tmp_path, config, signer):
    store = ObjectStore(config)
    archive = Archive(tmp_path / "staging")
    seal_to_store(_drill(archive), store, signer)
    key_file = tmp_path / "pinned.pub"
    key_file.write_bytes(signer.public_key_pem())
    base = [sys.executable, "-m", "livedrill", "evidence", "verify", "--archive", config.url, "--endpoint-url", config.endpoint_url,
            "--credentials", str(config.credentials_file)]

    pinned = subprocess.run([*base, "--trusted-key", str(key_file), "--json"], capture_output=True, text=True, timeout=120)
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout)["verified"] is True
    unpinned = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert unpinned.returncode == 3  # integrity holds, origin not established without a pinned key
    no_endpoint = subprocess.run(base[:7], capture_output=True, text=True, timeout=120)
    assert no_endpoint.returncode == 2 and "--endpoint-url" in no_endpoint.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_a_lab_drill_with_evidence_store_seals_into_the_bucket(lab, tmp_path, config, local_tsa):  # noqa: F811
    from flows.drill import drill
    from livedrill.evidence.keys import load_signer
    from livedrill.outcomes import DrillOutcome
    from tests.lab_helpers import lab_spec

    store_section = {"endpoint_url": config.endpoint_url, "bucket": config.bucket, "prefix": config.prefix,
                     "credentials_file": str(config.credentials_file)}
    spec, text = lab_spec(lab, tmp_path, evidence={"store": store_section, "tsa": {"url": local_tsa.url}})
    verdict = drill(spec, text)

    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    run_dir = Path(verdict.evidence_dir)
    assert (run_dir / MANIFEST_NAME).exists() and not (run_dir / UNSEALED_NAME).exists()
    store = ObjectStore(config)
    signer = load_signer(spec.evidence.signing_key)
    stamped = TimestampPolicy(roots=[local_tsa.root], required=True)  # the TSA's token went to the bucket too
    report = verify_store_report(store, trusted_keys=[signer.public_key], timestamps=stamped)
    assert report.problems == [] and report.runs_checked == 1
    assert store.get_locked(store.run_key(run_dir.name, "verdict.json")).body == (run_dir / "verdict.json").read_bytes()
    assert store.get_locked(store.run_key(run_dir.name, "MANIFEST.tsr")).lock_mode == "COMPLIANCE"


def test_gateway_lost_mid_seal_then_sync_seals_the_staged_run(tmp_path, config, signer, rgw):
    import yaml

    from cryptography.hazmat.primitives import serialization

    key = tmp_path / "signing.pem"
    key.write_bytes(signer._private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    staging = tmp_path / "staging"
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "drills" / "lab-targeted.yaml").read_text())
    spec["evidence"] = {"dir": str(staging), "signing_key": str(key), "store": {
        "endpoint_url": config.endpoint_url, "bucket": config.bucket, "prefix": config.prefix, "credentials_file": str(config.credentials_file)}}
    spec_text = yaml.safe_dump(spec, sort_keys=False)
    spec_file = tmp_path / "core.yaml"
    spec_file.write_text(spec_text)
    store = ObjectStore(config)
    archive = Archive(staging)
    seal_to_store(_drill(archive), store, signer)
    run = _drill(archive)
    run.write_text("spec.yaml", spec_text)  # the run's own spec names the store, as a real drill's does

    impatient = ObjectStore(config.model_copy(update={"request_timeout_s": 1.0, "attempts": 2}))
    puts = []

    def gateway_dies_after_four_uploads(**_):
        puts.append(1)
        if len(puts) == 4:
            rgw.stop_gateway()

    impatient._client.meta.events.register("after-call.s3.PutObject", gateway_dies_after_four_uploads)
    try:
        with pytest.raises(StoreUnavailable):
            seal_to_store(run, impatient, signer)
    finally:
        rgw.start_gateway()
    assert (run.path / UNSEALED_NAME).exists() and len(puts) >= 4

    synced = subprocess.run([sys.executable, "-m", "livedrill", "evidence", "sync", str(spec_file)], capture_output=True, text=True,
                            timeout=120)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert f"sealed {run.run_id}" in synced.stdout
    assert run.sealed
    report = verify_store_report(store, trusted_keys=[signer.public_key])
    assert report.problems == [] and report.runs_checked == 2

    bundle = tmp_path / "bundle.tar.gz"
    exported = subprocess.run([sys.executable, "-m", "livedrill", "evidence", "export", "--archive", config.url,
                               "--endpoint-url", config.endpoint_url, "--credentials", str(config.credentials_file),
                               "--quarter", _quarter(run.run_id), "--out", str(bundle), "--signing-key", str(key)],
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    assert "2 drill(s)" in exported.stdout and bundle.stat().st_size > 0


def _quarter(run_id: str) -> str:
    year, month = int(run_id[:4]), int(run_id[4:6])
    return f"{year}Q{(month - 1) // 3 + 1}"


def test_an_auditor_with_read_only_access_verifies_and_cannot_write(tmp_path, config, signer, rgw):
    store = ObjectStore(config)
    seal_to_store(_drill(Archive(tmp_path / "staging")), store, signer)
    uid = f"auditor-{uuid.uuid4().hex[:6]}"
    access, secret = rgw.add_user(uid)
    reads = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention",
             "s3:GetBucketObjectLockConfiguration"]
    for bucket in (config.bucket, config.claims):  # the archive's owner grants the auditor reads, nothing else
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam:::user/{uid}"]},
                                                          "Action": reads, "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}
        store._client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    auditor = ObjectStore(config.model_copy(update={"credentials_file": rgw.credentials_file(access, secret, name=f"{uid}.ini")}))

    report = verify_store_report(auditor, trusted_keys=[signer.public_key])
    assert report.problems == [] and report.runs_checked == 1
    with pytest.raises(StoreError) as refused:
        auditor.put_plain(auditor.key("runs", "forged"), b"x")
    assert refused.value.status == 403


def test_the_drills_preflight_reaches_the_store_and_names_what_is_wrong(config, rgw):
    from livedrill.evidence.worm import store_readiness

    assert store_readiness(config).problem is None  # buckets created with Object Lock
    assert ObjectStore(config)._client.get_object_lock_configuration(Bucket=config.bucket)["ObjectLockConfiguration"][
        "ObjectLockEnabled"] == "Enabled"
    plain = config.model_copy(update={"bucket": f"plain-{uuid.uuid4().hex[:8]}"})
    ObjectStore(plain)._client.create_bucket(Bucket=plain.bucket)
    refused = store_readiness(plain)
    assert not refused.transient and f"evidence.store.bucket {plain.bucket}: Object Lock is not enabled" in refused.problem
    wrong_key = rgw.credentials_file(rgw.access_key, "not-the-secret", name="wrong.ini")
    denied = store_readiness(config.model_copy(update={"credentials_file": wrong_key}))
    assert not denied.transient and denied.problem
    rgw.stop_gateway()
    try:
        down = store_readiness(config.model_copy(update={"request_timeout_s": 1.0, "attempts": 1}))
    finally:
        rgw.start_gateway()
    assert down.transient and "unreachable" in down.problem


def test_a_programme_sign_off_is_sealed_into_the_store_like_the_drills(tmp_path, config, signer, capsys):
    """A programme record in an archive whose drills seal into a WORM store goes into that store's chain too."""
    import yaml

    from livedrill.cli import main
    from livedrill.evidence.records import RECORD_FILE

    store = ObjectStore(config)
    staging = tmp_path / "staging"
    drill = _drill(Archive(staging))
    seal_to_store(drill, store, signer)
    (tmp_path / "key.pem").write_bytes(signer.private_key_pem())
    template = yaml.safe_load((Path(__file__).resolve().parents[2] / "drills" / "lab-targeted.yaml").read_text())
    template["evidence"] = {"dir": str(staging), "signing_key": str(tmp_path / "key.pem"),
                            "store": config.model_dump(mode="json", exclude_none=True)}
    (tmp_path / "drill.yaml").write_text(yaml.safe_dump(template))
    year, month = int(drill.run_id[:4]), int(drill.run_id[4:6])
    first = 3 * ((month - 1) // 3) + 1
    (tmp_path / "programme.yaml").write_text(yaml.safe_dump({
        "kind": "programme", "name": "core-tier", "quarter": f"{year}Q{(month - 1) // 3 + 1}",
        "clusters": [{"name": "lab", "platform": {"kind": "kubevirt"}}],
        "windows": {"timezone": "Asia/Shanghai", "slots": [{"start": f"{year}-{first:02d}-15T01:00",
                                                           "end": f"{year}-{first:02d}-15T05:00"}]},
        "drill": {"spec": "drill.yaml"}, "sign_off": {"roles": ["cio"]}}))
    (tmp_path / "inventory.json").write_text(json.dumps({"targets": [
        {"cluster": "lab", "vm": "banking/banking-core-vm", "node": "node-1", "gib": 2, "labels": {"tier": "core"}}]}))

    code = main(["programme", "sign-off", str(tmp_path / "programme.yaml"), "--archive", str(staging),
                 "--inventory", str(tmp_path / "inventory.json"), "--role", "cio", "--name", "Li Wei",
                 "--decision", "approved", "--statement", "drilled and passed", "--signing-key", str(tmp_path / "key.pem")])
    out = capsys.readouterr()
    assert code == 0, out.err
    record_run = out.out.strip().rsplit("sealed as ", 1)[1]
    got = store.get_locked(store.run_key(record_run, RECORD_FILE))
    assert got.lock_mode == "COMPLIANCE" and json.loads(got.body)["name"] == "Li Wei"
    report = verify_store_report(store, trusted_keys=[signer.public_key])
    assert (report.problems, report.runs_checked) == ([], 2)  # the drill and the sign-off, one chain
