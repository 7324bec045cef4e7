"""Vault cryptography: key loading, AES-GCM sealing bound to school and field."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.secret_key import key_from_text, load_secret_key
from adapters.vault import KEY_ENV, VaultError, seal, unseal

KEY = bytes(range(32))


def test_base64_key_used_as_is() -> None:
    """A urlsafe base64 32-byte key decodes to exactly those bytes."""
    text = base64.urlsafe_b64encode(KEY).decode()
    assert key_from_text(text) == KEY
    assert key_from_text(text.rstrip("=")) == KEY


def test_passphrase_is_stretched_deterministically() -> None:
    """Any other text is a passphrase: same passphrase, same 32-byte key; different, different."""
    first = key_from_text("correct horse battery staple")
    assert len(first) == 32
    assert first == key_from_text("correct horse battery staple")
    assert first != key_from_text("correct horse battery stapler")


def test_seal_roundtrip_and_ciphertext_hides_value() -> None:
    """A sealed value decrypts back and its bytes do not contain the clear text."""
    aead = AESGCM(KEY)
    blob = seal(aead, "demo", "tokens", "refresh-AB11-secret-value")
    assert b"refresh-AB11-secret-value" not in blob
    assert unseal(aead, "demo", "tokens", blob) == "refresh-AB11-secret-value"


def test_blob_cannot_move_to_another_school_or_field() -> None:
    """The associated data binds school and field: a swapped blob fails to decrypt."""
    aead = AESGCM(KEY)
    blob = seal(aead, "demo", "tokens", "x")
    with pytest.raises(VaultError):
        unseal(aead, "other", "tokens", blob)
    with pytest.raises(VaultError):
        unseal(aead, "demo", "secret:client", blob)


def test_wrong_key_is_a_stated_error() -> None:
    """Decrypting with another key raises VaultError naming the variable, not the secret."""
    blob = seal(AESGCM(KEY), "demo", "tokens", "hidden")
    with pytest.raises(VaultError, match=KEY_ENV) as err:
        unseal(AESGCM(os.urandom(32)), "demo", "tokens", blob)
    assert "hidden" not in str(err.value)


def test_missing_key_without_create_is_refused(tmp_path: Path) -> None:
    """No variable and no key file: a clear 'FLIGHTLEDGER_SECRET_KEY is not set' error."""
    with pytest.raises(VaultError, match="FLIGHTLEDGER_SECRET_KEY is not set"):
        load_secret_key({}, tmp_path / "secret.key", create=False)


def test_demo_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    """create=True writes a 0600 key file; later loads (create or not) read the same key."""
    path = tmp_path / ".flightledger" / "secret.key"
    key = load_secret_key({}, path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key({}, path, create=False) == key
    assert load_secret_key({}, path, create=True) == key


def test_environment_wins_over_key_file(tmp_path: Path) -> None:
    """FLIGHTLEDGER_SECRET_KEY is used even when a key file exists."""
    path = tmp_path / "secret.key"
    load_secret_key({}, path, create=True)
    text = base64.urlsafe_b64encode(KEY).decode()
    assert load_secret_key({KEY_ENV: text}, path, create=False) == KEY
