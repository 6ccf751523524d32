"""KubeVirt's OpenAPI document (api/openapi-spec/swagger.json of https://github.com/kubevirt/kubevirt), found
beside the checkout as CI lays it out."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo into a fresh folder with shared/kubevirt/swagger.json beside it; developers keep the same layout.
CANDIDATES = [REPO.parent / "shared" / "kubevirt" / "swagger.json", Path("/work/shared/kubevirt/swagger.json")]


@lru_cache(maxsize=1)
def definitions() -> dict:
    for path in CANDIDATES:
        if path.exists():
            return json.loads(path.read_text())["definitions"]
    raise FileNotFoundError(f"KubeVirt's swagger.json is not at any of {[str(p) for p in CANDIDATES]}")


def validator(definition: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{definition}", "definitions": definitions()})
