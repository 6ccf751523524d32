"""The WORM store's input and decisions, without a store: spec fields, credentials, auditor URLs, which version is sealed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from livedrill.evidence.manifest import sha256_bytes
from livedrill.evidence.store import StoredVersion
from livedrill.evidence.store_config import ObjectStoreConfig, StoreInputError, load_credentials, store_from_url
from livedrill.evidence.store_verify import pick_sealed
from livedrill.spec import SpecError, parse_spec

REPO = Path(__file__).resolve().parents[2]


def _spec_with_store(store: dict) -> str:
    data = yaml.safe_load((REPO / "drills" / "lab-targeted.yaml").read_text())
    data["evidence"] = {"dir": "evidence", "store": store}
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize("store, field, says", [
    ({"endpoint_url": "rgw.bank.internal", "bucket": "core-evidence"}, "evidence.store.endpoint_url", "not an http(s) URL"),
    ({"endpoint_url": "https://rgw", "bucket": "Core_Evidence"}, "evidence.store.bucket", "pattern"),
    ({"endpoint_url": "https://rgw", "bucket": "core-evidence", "prefix": "/core"}, "evidence.store.prefix", "slash"),
    ({"endpoint_url": "https://rgw", "bucket": "core-evidence", "retention_days": 0}, "evidence.store.retention_days", "greater"),
    ({"endpoint_url": "https://rgw", "bucket": "core-evidence", "secret_key": "x"}, "evidence.store.secret_key", "unknown field"),
])
def test_a_bad_store_section_names_its_field_and_line(store, field, says):
    with pytest.raises(SpecError) as refused:
        parse_spec(_spec_with_store(store), "core.yaml")
    text = str(refused.value)
    assert field in text and says in text
    assert "line" in text


def test_credentials_come_from_the_named_file_section_or_the_environment(tmp_path, monkeypatch):
    creds = tmp_path / "s3.ini"
    creds.write_text("[drills]\naws_access_key_id = AK\naws_secret_access_key = SK\n[broken]\naws_access_key_id = AK\n")
    base = {"endpoint_url": "https://rgw", "bucket": "core-evidence", "credentials_file": creds}
    got = load_credentials(ObjectStoreConfig(**base, profile="drills"))
    assert (got.access_key, got.secret_key) == ("AK", "SK")
    assert "SK" not in repr(got)
    with pytest.raises(StoreInputError, match=r"\[broken\]: missing aws_secret_access_key"):
        load_credentials(ObjectStoreConfig(**base, profile="broken"))
    with pytest.raises(StoreInputError, match=r"no \[default\] section"):
        load_credentials(ObjectStoreConfig(**base))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(StoreInputError, match="AWS_ACCESS_KEY_ID"):
        load_credentials(ObjectStoreConfig(endpoint_url="https://rgw", bucket="core-evidence"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVAK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVSK")
    assert load_credentials(ObjectStoreConfig(endpoint_url="https://rgw", bucket="core-evidence")).access_key == "ENVAK"


@pytest.mark.parametrize("url, bucket, prefix", [
    ("s3://core-evidence", "core-evidence", ""),
    ("s3://core-evidence/", "core-evidence", ""),
    ("s3://core-evidence/core-tier", "core-evidence", "core-tier"),
    ("s3://core-evidence/bank/core-tier/", "core-evidence", "bank/core-tier"),
])
def test_an_auditor_names_the_store_as_a_url(url, bucket, prefix):
    config = store_from_url(url, endpoint_url="https://rgw.bank.internal")
    assert (config.bucket, config.prefix, config.claims) == (bucket, prefix, f"{bucket}-claims")


@pytest.mark.parametrize("url, endpoint, says", [
    ("s3://core-evidence", None, "--endpoint-url"),
    ("s3:/core-evidence", "https://rgw", "expected s3://BUCKET"),
    ("s3://CORE", "https://rgw", "--archive s3://CORE"),
])
def test_a_bad_store_url_is_refused_by_name(url, endpoint, says):
    with pytest.raises(StoreInputError, match=says):
        store_from_url(url, endpoint_url=endpoint)


T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _history(*bodies: bytes) -> tuple[list[StoredVersion], dict[str, bytes]]:
    versions = [StoredVersion("runs/r/verdict.json", f"v{i}", sha256_bytes(b)[:32], T0 + timedelta(seconds=i)) for i, b in enumerate(bodies)]
    return versions, {v.version_id: b for v, b in zip(versions, bodies)}


@pytest.mark.parametrize("bodies, expected, chosen, overwritten", [
    ([b"sealed"], None, 0, 0),                                   # a key, one version
    ([b"sealed", b"sealed"], None, 0, 0),                        # a seal repeated with the same bytes
    ([b"sealed", b"insider"], None, 0, 1),                       # an overwrite after the seal: the oldest stands
    ([b"sealed", b"insider"], b"sealed", 0, 1),
    ([b"before outage", b"sealed"], b"sealed", 1, 0),            # a seal retried after an outage uploaded an earlier state
    ([b"before outage", b"sealed", b"insider"], b"sealed", 1, 1),
    ([b"a", b"b"], b"neither", 0, 1),                            # none matches: the oldest, whose hash check then fails
])
def test_the_sealed_version_of_a_key(bodies, expected, chosen, overwritten):
    history, by_id = _history(*bodies)
    got, problems = pick_sealed(history, lambda v: sha256_bytes(by_id[v.version_id]), sha256_bytes(expected) if expected else None)
    assert got == chosen
    assert [p.code for p in problems] == ["store-overwritten"] * overwritten
