"""Where a creditor's drop zone lives: the `store:` block of a profile.

It lives in config (not in stores) because a profile must be validated at start without importing
paramiko or boto3, and config imports nothing of ours. Secrets are never part of it: the block names
the environment variables that hold them, so a profile in git or a config dump in a log carries no
password. `creditflow.stores.factory.store_from_config` turns it into a store.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Keys that would put a secret into the YAML itself; refused with a pointer to the *_env field.
_SECRET_KEYS = {
    "password": "password_env",
    "key_passphrase": "key_passphrase_env",
    "access_key_id": "access_key_id_env",
    "secret_access_key": "secret_access_key_env",
    "session_token": "session_token_env",
}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_SFTP_ONLY = ("host", "username", "password_env", "key_path", "key_passphrase_env",
              "known_host_key", "known_hosts_path")
_S3_ONLY = ("bucket", "prefix", "endpoint_url", "region", "addressing_style",
            "access_key_id_env", "secret_access_key_env", "session_token_env")


class StoreConfig(BaseModel):
    """Where one creditor's area lives. `root` and `prefix` may contain `{creditor_id}`."""

    # hide_input_in_errors: a password pasted into the YAML must not be echoed by the error
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    kind: Literal["local", "sftp", "s3"] = "local"

    # local: the area folder (default: <dropzone>/<creditor_id>); sftp: the area path on the server
    # (relative paths start in the login folder; default: <creditor_id>)
    root: str | None = None

    settle_seconds: float = Field(
        30.0, ge=0,
        description="A file seen for the first time is taken at once only when its modification "
        "time is at least this old; otherwise on the next poll, if its size and time did not change.",
    )

    # sftp
    host: str | None = None
    port: int = Field(22, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = Field(None, pattern=_ENV_NAME)
    key_path: Path | None = None
    key_passphrase_env: str | None = Field(None, pattern=_ENV_NAME)
    known_host_key: str | None = Field(
        None, description='The server\'s public host key, "ssh-ed25519 AAAA...": pinned, never learned.'
    )
    known_hosts_path: Path | None = Field(None, description="Or an OpenSSH known_hosts file.")
    timeout: float = Field(15.0, gt=0)
    retries: int = Field(4, ge=0, le=20)

    # s3
    bucket: str | None = None
    prefix: str | None = Field(None, description="Key prefix of the area (default: <creditor_id>).")
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    access_key_id_env: str | None = Field(None, pattern=_ENV_NAME)
    secret_access_key_env: str | None = Field(None, pattern=_ENV_NAME)
    session_token_env: str | None = Field(None, pattern=_ENV_NAME)

    @property
    def location(self) -> str | None:
        """The configured place of the area: the key prefix on S3, the root folder otherwise."""
        return self.prefix if self.kind == "s3" else self.root

    def serves_one_creditor(self) -> bool:
        """Does its location name `{creditor_id}`, so it cannot be a bank area serving them all?"""
        return self.location is not None and "{creditor_id}" in self.location

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            inline = sorted(key for key in data if key in _SECRET_KEYS)
            if inline:
                hints = ", ".join(f"{key} -> {_SECRET_KEYS[key]}" for key in inline)
                raise ValueError(
                    "secrets do not belong in the store config; put them in environment variables "
                    f"and name those here ({hints})"
                )
        return data

    @model_validator(mode="after")
    def _fields_for_kind(self) -> StoreConfig:
        foreign = {"local": _SFTP_ONLY + _S3_ONLY, "sftp": _S3_ONLY, "s3": _SFTP_ONLY + ("root",)}
        stray = [name for name in foreign[self.kind] if getattr(self, name) is not None]
        if stray:
            raise ValueError(f"fields not used by a {self.kind} store: {', '.join(stray)}")
        for name in ("root", "prefix"):
            value = getattr(self, name)
            if value is not None:
                _only_creditor_placeholder(name, value)
        if self.kind == "sftp":
            missing = [name for name in ("host", "username") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"an sftp store needs {', '.join(missing)}")
            if self.password_env is None and self.key_path is None:
                raise ValueError("an sftp store needs password_env or key_path")
            if self.known_host_key is None and self.known_hosts_path is None:
                raise ValueError(
                    "an sftp store needs the server's host key (known_host_key or known_hosts_path); "
                    "an unknown host key is never accepted"
                )
        if self.kind == "s3":
            if self.bucket is None:
                raise ValueError("an s3 store needs bucket")
            if (self.access_key_id_env is None) != (self.secret_access_key_env is None):
                raise ValueError("give both access_key_id_env and secret_access_key_env, or neither "
                                 "(then the usual AWS credential chain applies)")
        return self


def _only_creditor_placeholder(field: str, value: str) -> None:
    """`{creditor_id}` is the one placeholder; a typo like `{creditor}` would fail at the first poll."""
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    unknown = sorted({name for _, name, _, _ in parsed if name is not None and name != "creditor_id"})
    if unknown:
        raise ValueError(f"{field}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                         "only {creditor_id} is replaced")
