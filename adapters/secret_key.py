"""The vault key: FLIGHTLEDGER_SECRET_KEY, or the local key file beside a SQLite database.

``FLIGHTLEDGER_SECRET_KEY``: urlsafe base64 of 32 bytes is used as is; any other text is treated
as a passphrase and stretched with scrypt (n=2**14, r=8, p=1, salt ``flightledger-vault-v1``) to
32 bytes. Without the variable, ``load_secret_key`` reads (or, for the demo, creates with mode
0600) ``.flightledger/secret.key`` beside the SQLite database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from adapters.persistence import DatabaseUrl
from adapters.vault import KEY_ENV, VaultError

KEY_FILE_NAME = "secret.key"
_SALT = b"flightledger-vault-v1"


def key_from_text(text: str) -> bytes:
    """32 key bytes from FLIGHTLEDGER_SECRET_KEY (urlsafe base64 of 32 bytes, or a passphrase)."""
    value = text.strip()
    if not value:
        raise VaultError(f"{KEY_ENV} is empty")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32 and len(value) in (43, 44):
        return raw
    return hashlib.scrypt(value.encode(), salt=_SALT, n=2**14, r=8, p=1, dklen=32)


def new_key_text() -> str:
    """A fresh key as urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def default_key_file(db: DatabaseUrl) -> Path:
    """``.flightledger/secret.key`` beside the SQLite database (or the working directory)."""
    base = Path.cwd()
    if not db.is_postgres and not db.path.startswith("file:"):
        base = Path(db.path).expanduser().resolve().parent
    return base / ".flightledger" / KEY_FILE_NAME


def load_secret_key(env: Mapping[str, str], key_file: Path | None, create: bool) -> bytes:
    """The vault key: FLIGHTLEDGER_SECRET_KEY, else the key file (created 0600 when create)."""
    text = env.get(KEY_ENV, "")
    if text.strip():
        return key_from_text(text)
    if key_file is not None and key_file.is_file():
        return key_from_text(key_file.read_text())
    if create and key_file is not None:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = new_key_text()
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return key_from_text(value)
    where = f" and no key file at {key_file}" if key_file is not None else ""
    raise VaultError(
        f"{KEY_ENV} is not set{where}: set it to a urlsafe base64 32-byte key "
        '(python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())")'
        " or any passphrase"
    )
