"""Build a creditor's file store from a small config block, and the errors every store shares.

A creditor profile (or the process settings) names where its area lives: a local folder, a folder on
an SFTP server, or a prefix in an S3 bucket. Secrets are never part of that config: it names the
environment variables that hold them, so a YAML file in git or a config dump in a log carries no
password. The SFTP and S3 modules are imported only when such a store is built, so the embedded
(local) setup does not pay for paramiko or boto3.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from creditflow.stores.base import FileStore, StoreError
from creditflow.stores.local import LocalStore

if TYPE_CHECKING:
    from creditflow.config.settings import Settings


class StoreUnavailable(StoreError):
    """The server could not be reached or dropped the connection, even after retries: try again later."""

    transient = True


class AlreadyClaimed(StoreError):
    """Someone else got there first: the target name is taken, or the source was moved away.

    Raised by a conditional create (`write(..., create_only=True)`) and by `move` on stores where
    two workers can race for the same file (S3, SFTP). The loser should skip the file, not retry.
    """

    transient = False


class StoreConfigError(StoreError, ValueError):
    """The store config cannot be turned into a store (missing environment variable, bad id)."""


# Keys that would put a secret into the YAML itself; refused with a pointer to the *_env field.
_SECRET_KEYS = {
    "password": "password_env",
    "key_passphrase": "key_passphrase_env",
    "access_key_id": "access_key_id_env",
    "secret_access_key": "secret_access_key_env",
    "session_token": "session_token_env",
}
_CREDITOR_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class StoreConfig(BaseModel):
    """Where one creditor's area lives. `root` and `prefix` may contain `{creditor_id}`."""

    # hide_input_in_errors: a password pasted into the YAML must not be echoed by the error
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    kind: Literal["local", "sftp", "s3"] = "local"

    # local: the area folder (default: <dropzone>/<creditor_id>); sftp: the area path on the server
    # (relative paths start in the login folder; default: <creditor_id>)
    root: str | None = None

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
        sftp_only = ("host", "username", "password_env", "key_path", "key_passphrase_env",
                     "known_host_key", "known_hosts_path")
        s3_only = ("bucket", "prefix", "endpoint_url", "region", "addressing_style",
                   "access_key_id_env", "secret_access_key_env", "session_token_env")
        foreign = {"local": sftp_only + s3_only, "sftp": s3_only, "s3": sftp_only + ("root",)}
        stray = [name for name in foreign[self.kind] if getattr(self, name) is not None]
        if stray:
            raise ValueError(f"fields not used by a {self.kind} store: {', '.join(stray)}")
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


def _secret(env: Mapping[str, str], name: str | None) -> SecretStr | None:
    if name is None:
        return None
    try:
        return SecretStr(env[name])
    except KeyError:
        raise StoreConfigError(f"environment variable {name} is not set") from None


def store_from_config(
    cfg: StoreConfig,
    creditor_id: str,
    *,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    s3_client: Any = None,
) -> FileStore:
    """The store of `creditor_id`'s area. Nothing connects yet: SFTP and S3 connect on first use."""
    if not _CREDITOR_ID.match(creditor_id):
        raise StoreConfigError(f"creditor id {creditor_id!r} is not a safe id")
    env = os.environ if env is None else env

    if cfg.kind == "local":
        if cfg.root is not None:
            root = Path(cfg.root.format(creditor_id=creditor_id))
        else:
            if settings is None:
                from creditflow.config.settings import get_settings

                settings = get_settings()
            root = settings.resolved_dropzone_dir / creditor_id
        return LocalStore(root)

    if cfg.kind == "sftp":
        from creditflow.stores.sftp import SftpStore

        known: Any = cfg.known_host_key if cfg.known_host_key is not None else cfg.known_hosts_path
        return SftpStore(
            cfg.host or "",
            cfg.port,
            cfg.username or "",
            root=(cfg.root or "{creditor_id}").format(creditor_id=creditor_id),
            password=_secret(env, cfg.password_env),
            key_path=cfg.key_path,
            key_passphrase=_secret(env, cfg.key_passphrase_env),
            known_host_key=known,
            timeout=cfg.timeout,
            retries=cfg.retries,
        )

    from creditflow.stores.s3 import S3Store

    return S3Store(
        cfg.bucket or "",
        (cfg.prefix if cfg.prefix is not None else "{creditor_id}").format(creditor_id=creditor_id),
        client=s3_client,
        endpoint_url=cfg.endpoint_url,
        region=cfg.region,
        addressing_style=cfg.addressing_style,
        access_key_id=_secret(env, cfg.access_key_id_env),
        secret_access_key=_secret(env, cfg.secret_access_key_env),
        session_token=_secret(env, cfg.session_token_env),
        max_attempts=cfg.retries + 1,
    )
