"""Secret redaction for everything written into an evidence run.

Secrets are replaced by a fixed marker, never by a hash: a hash of a low-entropy secret such as the
lab VM's cloud-init `password: changeme` can be reversed by guessing, so it would leak the secret it hides.

Two layers, both applied by `redact`:
- structure: keys that hold secrets wherever they appear (cloud-init user/network data, passwords,
  tokens, kubeconfig credentials, auth headers), Kubernetes Secret `data`/`stringData`, name/value
  pairs whose name says secret (env vars, HTTP header lists), and JSON documents embedded in strings
  (`kubectl.kubernetes.io/last-applied-configuration` carries the whole VM, user data included);
- text (`redact_text`, also applied to every string value): PEM private key blocks, bearer tokens,
  and `key: value` / `key=value` / `"key": "value"` where the key names a secret, including YAML
  block scalars (`userData: |` followed by the indented cloud-config).
"""

from __future__ import annotations

import enum
import json
import re
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

REDACTED = "<redacted>"


def _norm(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


# Keys whose value is a secret wherever they appear in a structure (normalised: lower-case, no - or _).
SECRET_KEYS = frozenset(
    {
        "userdata",
        "userdatabase64",
        "networkdata",
        "networkdatabase64",
        "password",
        "passwd",
        "token",
        "idtoken",
        "refreshtoken",
        "accesstoken",
        "bearertoken",
        "clientkeydata",
        "clientcertificatedata",
        "clientsecret",
        "secret",
        "apikey",
        "xapikey",
        "privatekey",
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
    }
)

# In a name/value pair (env var, header list) the value is secret when the name contains one of these.
_SECRET_NAME_PARTS = ("password", "passwd", "token", "secret", "apikey", "privatekey", "credential", "authorization", "cookie")

# Keys matched in free text. Some may carry a prefix (DB_PASSWORD, kube_token) because env-style
# names put the qualifier first; the rest must match exactly.
_TEXT_KEYS_EXACT = (
    r"userData(?:Base64)?|networkData(?:Base64)?|client-key-data|client-certificate-data|client-secret"
    r"|id-token|refresh-token|access-token|authorization|proxy-authorization|cookie|set-cookie"
)
_TEXT_KEYS_SUFFIX = r"[\w.-]*?(?:password|passwd|token|secret|api[-_]?key|private[-_]?key)"
_KEY_VALUE = re.compile(
    r"""(?P<lead>(?<![\w.-])(?P<q>["']?)(?:"""
    + _TEXT_KEYS_EXACT
    + "|"
    + _TEXT_KEYS_SUFFIX
    + r""")(?P=q)[ \t]*[:=][ \t]*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[^\n]*)""",
    re.IGNORECASE,
)
_BLOCK_SCALAR = re.compile(r"^[|>][-+0-9]*[ \t]*(?:#.*)?$")
_PEM_PRIVATE = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY)-----.*?(?:-----END (?P=label)-----|\Z)", re.DOTALL
)
# Long enough to be a credential, so prose ("the bearer of") is left alone.
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*")


def _redact_value_text(match: re.Match[str]) -> str:
    value = match.group("value")
    if not value.strip():
        return match.group(0)
    if _BLOCK_SCALAR.match(value.strip()):
        return match.group(0)  # the block lines are handled by redact_text's line pass
    if value[:1] in "\"'":
        return f"{match.group('lead')}{value[0]}{REDACTED}{value[0]}"
    return f"{match.group('lead')}{REDACTED}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def redact_text(text: str) -> str:
    """Redact secrets in free text (YAML, logs, XML, JSON text)."""
    text = _PEM_PRIVATE.sub(lambda m: f"-----BEGIN {m.group('label')}-----\n{REDACTED}\n-----END {m.group('label')}-----", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    out: list[str] = []
    block_indent: int | None = None  # indentation of a secret key whose block scalar we are dropping
    for line in text.splitlines(keepends=True):
        if block_indent is not None:
            if not line.strip() or _indent(line) > block_indent:
                continue
            block_indent = None
        match = _KEY_VALUE.search(line)
        if match and _BLOCK_SCALAR.match(match.group("value").strip()):
            block_indent = _indent(line)
            end = "\n" if line.endswith("\n") else ""
            out.append(f"{line[: match.start('value')]}{REDACTED}{end}")
            continue
        out.append(_KEY_VALUE.sub(_redact_value_text, line))
    return "".join(out)


def _redact_string(value: str) -> str:
    stripped = value.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            embedded = json.loads(value)
        except ValueError:
            pass
        else:
            if isinstance(embedded, (dict, list)):
                return json.dumps(_redact_tree(embedded), ensure_ascii=False, separators=(",", ":"))
    return redact_text(value)


def _is_secret_object(obj: dict[str, Any]) -> bool:
    # The kubernetes client drops `kind` from list items, so also recognise a Secret by its shape.
    if obj.get("kind") == "Secret":
        return True
    return "metadata" in obj and isinstance(obj.get("type"), str) and ("data" in obj or "stringData" in obj or "string_data" in obj)


# Under a secret-named key, a nested structure may be a reference to a secret (a Kubernetes `secret:`
# volume names its Secret); these keys name things and stay readable, every other leaf is redacted.
_REFERENCE_KEYS = frozenset({"secretname", "name", "namespace", "key", "optional", "path", "mode", "defaultmode", "items", "secretref"})


def _secret_value(value: Any) -> Any:
    if value is None or isinstance(value, bool) or value == "":
        return value
    if isinstance(value, dict):
        return {k: (_redact_tree(v) if _norm(str(k)) in _REFERENCE_KEYS else _secret_value(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_secret_value(v) for v in value]
    return REDACTED


def _redact_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        secret_object = _is_secret_object(obj)
        name = obj.get("name")
        secret_pair = (
            isinstance(name, str) and "value" in obj and any(part in _norm(name) for part in _SECRET_NAME_PARTS)
        )
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            k = str(key)
            if _norm(k) in SECRET_KEYS or (secret_pair and k == "value"):
                out[key] = _secret_value(value)
            elif secret_object and k in ("data", "stringData", "string_data") and isinstance(value, dict):
                out[key] = {dk: _secret_value(dv) for dk, dv in value.items()}
            else:
                out[key] = _redact_tree(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_redact_tree(v) for v in obj]
    if isinstance(obj, str):
        return _redact_string(obj)
    return obj


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from pydantic models, dataclass-free records, datetimes, enums and paths."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", by_alias=True)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    to_dict = getattr(obj, "to_dict", None)  # kubernetes client models
    if callable(to_dict):
        return to_jsonable(to_dict())
    raise TypeError(f"cannot write {type(obj).__name__} as evidence JSON")


def redact(obj: Any) -> Any:
    """A redacted, JSON-ready copy of `obj` (pydantic models, dicts, lists, kubernetes client models)."""
    return _redact_tree(to_jsonable(obj))
