"""KubeVirt's API groups and the translation of client errors into livedrill's classified ones."""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException

from livedrill.errors import PlatformError, PlatformUnreachable, parse_retry_after

KV_GROUP, KV_VERSION = "kubevirt.io", "v1"
MIGRATIONS_GROUP, MIGRATIONS_VERSION = "migrations.kubevirt.io", "v1alpha1"


def translate_error(exc: Exception, describe: str) -> Exception:
    """A client exception as livedrill's PlatformError (status, reason, Retry-After) or PlatformUnreachable."""
    if isinstance(exc, ApiException):
        reason = exc.reason
        message = f"{describe}: HTTP {exc.status} {reason}"
        try:
            body = json.loads(exc.body or "{}")
            if body.get("message"):
                message = f"{describe}: HTTP {exc.status}: {body['message']}"
                reason = body.get("reason") or reason
        except ValueError:
            pass
        retry_after = parse_retry_after((exc.headers or {}).get("Retry-After")) if exc.headers else None
        return PlatformError(message, status=exc.status, reason=reason, retry_after_s=retry_after)
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)):
        return PlatformUnreachable(f"{describe}: the Kubernetes API did not answer ({type(exc).__name__}: {exc})")
    return exc
