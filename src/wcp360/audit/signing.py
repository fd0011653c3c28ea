"""Ed25519 keys that sign audit checkpoints, with rotation that keeps old logs verifiable.

Keys live in `<data_dir>/secrets/audit/`: `<key_id>.key` (private, 0600) and `<key_id>.pub`
(public, PEM); `current` names the key in use. A key id is the first 16 hex digits of the SHA-256
of the raw public key. Rotation adds a key; public keys are never deleted, so every checkpoint
ever written stays verifiable.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wcp360.keys import adopt, ensure_private_dir, write_private


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_keys(text: str) -> dict[str, Ed25519PublicKey]:
    """Every PEM public key in `text` (a file may hold several, for rotated keys), by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for block in text.split("-----END PUBLIC KEY-----"):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        pem = block[block.index("-----BEGIN PUBLIC KEY-----") :] + "-----END PUBLIC KEY-----\n"
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        keys[key_id_of(key)] = key
    return keys


@dataclass
class SigningKeys:
    directory: Path

    def __post_init__(self) -> None:
        ensure_private_dir(self.directory)
        if not (self.directory / "current").exists():
            self.rotate()
        self.key_id = (self.directory / "current").read_text().strip()
        private = serialization.load_pem_private_key((self.directory / f"{self.key_id}.key").read_bytes(), None)
        assert isinstance(private, Ed25519PrivateKey)
        self._private = private

    def rotate(self) -> str:
        private = Ed25519PrivateKey.generate()
        key_id = key_id_of(private.public_key())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(self.directory / f"{key_id}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        adopt(fd, self.directory)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        write_private(self.directory / f"{key_id}.pub", public_pem(private.public_key()).encode())
        write_private(self.directory / "current", f"{key_id}\n".encode())
        self.key_id = key_id
        self._private = private
        return key_id

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self._private.sign(payload)).decode()

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        found: dict[str, Ed25519PublicKey] = {}
        for path in sorted(self.directory.glob("*.pub")):
            found.update(load_public_keys(path.read_text()))
        return found

    def export(self) -> str:
        """All public keys, current last, as concatenated PEM (what `audit verify --pubkey` reads)."""
        keys = self.public_keys()
        ordered = [k for k in keys if k != self.key_id] + [self.key_id]
        return "".join(public_pem(keys[k]) for k in ordered)


def verify_signature(public: Ed25519PublicKey, signature: str, payload: bytes) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), payload)
        return True
    except (InvalidSignature, ValueError):
        return False
