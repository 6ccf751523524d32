"""Where a WORM evidence archive lives on S3-compatible object storage, and the credentials to reach it.

The spec names the store; credentials never appear in a spec or in evidence: they come from a file
(AWS shared-credentials format) or from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from livedrill.specbase import SpecModel

# S3 bucket naming: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# Evidence is kept for years (banking record-keeping rules commonly ask for 5-10): the lock outlives the quarter.
DEFAULT_RETENTION_DAYS = 3653


class StoreInputError(ValueError):
    """The store's address or credentials are missing or malformed (names the field or variable)."""


class ObjectStoreConfig(SpecModel):
    """Seal every run into a bucket with S3 Object Lock (COMPLIANCE mode); `evidence.dir` stays the local staging area."""

    endpoint_url: str = Field(description="The S3 endpoint, e.g. https://rgw.bank.internal:443")
    bucket: str = Field(pattern=_BUCKET, description="Bucket created with Object Lock enabled: holds runs, keys and the chain")
    claims_bucket: str | None = Field(
        None, pattern=_BUCKET,
        description="Bucket WITHOUT versioning in which each chain position is claimed once by a conditional create "
                    "(a versioned Object Lock bucket may ignore If-None-Match); default: BUCKET-claims")
    prefix: str = Field("", description="Key prefix inside both buckets, e.g. core-tier (no leading or trailing /)")
    retention_days: int = Field(DEFAULT_RETENTION_DAYS, ge=1, le=36500,
                                description="COMPLIANCE retention of every sealed object; no one can shorten it")
    region: str = "us-east-1"
    credentials_file: Path | None = Field(
        None, description="AWS shared-credentials file (aws_access_key_id, aws_secret_access_key); default: the environment")
    profile: str = Field("default", description="Section of credentials_file to use")
    request_timeout_s: float = Field(10.0, gt=0, le=600, description="Connect and read timeout of each request")
    attempts: int = Field(4, ge=1, le=20, description="Tries of one request on a transient error (connection, timeout, 5xx, 429)")
    seal_attempts: int = Field(200, ge=1, le=10_000,
                               description="Claims of the next chain position before a seal gives up (others sealing at the same time win some)")

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, v: str) -> str:
        if v.startswith("/") or v.endswith("/") or "//" in v:
            raise ValueError(f"{v!r}: no leading, trailing or double slash")
        return v

    @property
    def claims(self) -> str:
        return self.claims_bucket or f"{self.bucket}-claims"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(access_key={self.access_key!r})"


def load_credentials(config: ObjectStoreConfig) -> Credentials:
    """The store's credentials from `credentials_file` (its `profile` section) or the environment."""
    if config.credentials_file is not None:
        parser = configparser.ConfigParser()
        try:
            with config.credentials_file.open(encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, configparser.Error) as exc:
            raise StoreInputError(f"evidence.store.credentials_file {config.credentials_file}: unreadable ({exc})") from exc
        if not parser.has_section(config.profile):
            raise StoreInputError(f"evidence.store.credentials_file {config.credentials_file}: no [{config.profile}] section")
        section = parser[config.profile]
        missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not section.get(k)]
        if missing:
            raise StoreInputError(f"evidence.store.credentials_file {config.credentials_file} [{config.profile}]: missing {', '.join(missing)}")
        return Credentials(section["aws_access_key_id"], section["aws_secret_access_key"])
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        raise StoreInputError("object store credentials: set evidence.store.credentials_file, or AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY in the environment")
    return Credentials(access, secret)


_S3_URL = re.compile(r"^s3://(?P<bucket>[^/]+)(?:/(?P<prefix>.*?))?/?$")


def is_store_url(text: str) -> bool:
    return text.startswith("s3://")


def store_from_url(url: str, *, endpoint_url: str | None, claims_bucket: str | None = None,
                   credentials_file: Path | None = None) -> ObjectStoreConfig:
    """`s3://BUCKET[/PREFIX]` plus an endpoint, as an auditor names a store on the command line."""
    match = _S3_URL.match(url)
    if not match:
        raise StoreInputError(f"--archive {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    if not endpoint_url:
        raise StoreInputError(f"--archive {url}: give the store's endpoint with --endpoint-url (or $AWS_ENDPOINT_URL)")
    try:
        return ObjectStoreConfig(endpoint_url=endpoint_url, bucket=match["bucket"], prefix=match["prefix"] or "",
                                 claims_bucket=claims_bucket, credentials_file=credentials_file)
    except ValueError as exc:
        raise StoreInputError(f"--archive {url}: {exc}") from exc
