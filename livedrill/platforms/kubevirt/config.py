"""The spec's `platform:` section for KubeVirt (imports no client library)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from livedrill.specbase import PlatformConfig


class KubeVirtPlatform(PlatformConfig):
    kind: Literal["kubevirt"]
    kubeconfig: Path | None = Field(None, description="Path to a kubeconfig; default: KUBECONFIG / ~/.kube/config")
    context: str | None = None
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of each API call")
    call_retry_deadline_s: float = Field(
        30.0, gt=0, description="How long one API call is retried on transient errors (connection, timeout, 5xx, 429)")
