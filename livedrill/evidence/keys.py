"""Ed25519 signing keys for evidence manifests.

The key id is the first 16 hex digits of SHA-256 over the raw 32-byte public key, so a published
public key file can be checked against its name without trusting the name. Signatures are the raw
64-byte Ed25519 signature, which `openssl pkeyutl -verify -rawin` checks directly.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY_ENV = "LIVEDRILL_SIGNING_KEY"


class SigningKeyError(Exception):
    """The signing key is missing, unreadable or not an Ed25519 private key."""


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key_pem(pem: bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; raises ValueError when it is not Ed25519."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key ({type(key).__name__})")
    return key


def signature_valid(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


class Signer:
    """An Ed25519 private key with its key id and public key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        self.key_id: str = key_id_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._private_key.sign(data)

    def public_key_pem(self) -> bytes:
        return public_key_pem(self.public_key)

    @classmethod
    def generate(cls) -> "Signer":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "key") -> "Signer":
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{source}: not a readable unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{source}: is a {type(key).__name__}, evidence needs an Ed25519 key")
        return cls(key)

    def private_key_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:  # never print key material
        return f"Signer(key_id={self.key_id})"


def load_signer(path: Path | None = None) -> Signer:
    """The signing key from `path`, else from $LIVEDRILL_SIGNING_KEY (a file path, or the PEM itself)."""
    if path is None:
        env = os.environ.get(SIGNING_KEY_ENV)
        if not env:
            raise SigningKeyError(f"no signing key: pass a key file or set {SIGNING_KEY_ENV} (path to an Ed25519 PEM key)")
        if env.lstrip().startswith("-----BEGIN"):
            return Signer.from_pem(env.encode(), source=f"${SIGNING_KEY_ENV}")
        path = Path(env)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read signing key ({exc.strerror})") from exc
    return Signer.from_pem(pem, source=str(path))


def ensure_lab_key(path: Path) -> Signer:
    """Load the lab signing key at `path`, creating it (mode 0600) the first time."""
    if path.exists():
        return load_signer(path)
    signer = Signer.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temp file then hard-link it into place: the link fails if another process
    # won the race, and nobody ever reads a half-written key.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(signer.private_key_pem())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return load_signer(path)
    finally:
        tmp.unlink(missing_ok=True)
    return signer


def signer_from_env() -> Signer | None:
    """The signer named by $LIVEDRILL_SIGNING_KEY, or None when it is not set (signing is then optional)."""
    return load_signer() if os.environ.get(SIGNING_KEY_ENV) else None
