"""Integration secrets (mailbox passwords, bot tokens) encrypted at rest.

A plugin stores ``crm.sealing.seal(password)`` in its table and calls ``open`` when it
needs the password.  The key is ``security.secrets_key`` (a Fernet key: :func:`new_key`
makes one) or, when that is empty, one derived from ``secret_key`` with HKDF.
Several keys may be given, separated by commas: the first seals, all of them open, so a key
can be rotated without losing the secrets sealed under the old one.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretUnreadable(Exception):
    """A sealed secret was made with a key this deployment no longer has."""


def derived_key(secret_key: str) -> bytes:
    """A Fernet key derived from the deployment's ``secret_key`` (HKDF-SHA256)."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"crmkit-sealing", info=b"secrets v1"
    ).derive(secret_key.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


def new_key() -> str:
    """A fresh random Fernet key for ``security.secrets_key``."""
    return Fernet.generate_key().decode("ascii")


class Sealing:
    """Encrypts and decrypts short secrets with the deployment's keys."""

    def __init__(self, secrets_key: str, secret_key: str) -> None:
        keys = [k.strip().encode("ascii") for k in secrets_key.split(",") if k.strip()]
        if not keys:
            if not secret_key:
                raise ValueError("secret_key (or security.secrets_key) is required to seal")
            keys = [derived_key(secret_key)]
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise ValueError(f"security.secrets_key: {exc}") from None

    def seal(self, secret: str) -> str:
        """The encrypted form of ``secret`` (ASCII, safe to store)."""
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        """The secret sealed in ``sealed``; :class:`SecretUnreadable` with a wrong key."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise SecretUnreadable(
                "a stored secret cannot be decrypted: was security.secrets_key changed?"
            ) from None
