"""`HmacSealer`: authenticates pysyncobj frames with HMAC-SHA256, standard library only.

pysyncobj's `TcpConnection` protects frames with an "encryptor" object that has three
methods, `encrypt_at_time(data, t)`, `extract_timestamp(token)` and `decrypt(token)`
(the Fernet API), and it unpickles a frame only after `decrypt` returned. The sealer
implements the same three methods: the token is `version | u64 timestamp | data |
HMAC-SHA256(key, version | timestamp | data)`, the key derived from the shared password
with PBKDF2. A frame without the right MAC raises, and pysyncobj drops the connection
before unpickling anything. pysyncobj's per-connection random key (inside the
authenticated data) and its non-decreasing timestamp check limit replay.

It authenticates, it does not encrypt: use `Security.FERNET` (pysyncobj's own password
support, needs the `cryptography` package) when the Raft traffic must also be secret.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

__all__ = ["HmacSealer", "InvalidTokenError"]

_VERSION = b"\x91"
_SALT = b"actorflow.raftkit.hmac.v1"
_ITERATIONS = 100_000
_TIMESTAMP = struct.Struct(">Q")
_MAC_SIZE = 32
_MIN_TOKEN = len(_VERSION) + _TIMESTAMP.size + _MAC_SIZE


class InvalidTokenError(ValueError):
    """A frame that is not sealed with this cluster's key."""


class HmacSealer:
    def __init__(self, password: str) -> None:
        if not password:
            raise ValueError("empty password")
        self._key = hashlib.pbkdf2_hmac("sha256", password.encode(), _SALT, _ITERATIONS)

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        body = _VERSION + _TIMESTAMP.pack(max(int(current_time), 0)) + bytes(data)
        return body + hmac.new(self._key, body, hashlib.sha256).digest()

    def extract_timestamp(self, token: bytes) -> int:
        body = self._verified(token)
        stamp: int = _TIMESTAMP.unpack_from(body, len(_VERSION))[0]
        return stamp

    def decrypt(self, token: bytes) -> bytes:
        return self._verified(token)[len(_VERSION) + _TIMESTAMP.size :]

    def _verified(self, token: bytes) -> bytes:
        token = bytes(token)
        if len(token) < _MIN_TOKEN or not token.startswith(_VERSION):
            raise InvalidTokenError("malformed frame")
        body, mac = token[:-_MAC_SIZE], token[-_MAC_SIZE:]
        if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()):
            raise InvalidTokenError("bad frame MAC")
        return body
