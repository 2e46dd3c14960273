"""Build a file store from a `store:` config block (creditflow.config.stores).

A creditor profile names where its area lives: a local folder, a folder on an SFTP server, or a
prefix in an S3 bucket; `{creditor_id}` in its root/prefix becomes the creditor's id. Our own bank
areas ("_bank", Settings.bank_areas) serve every creditor, so they have no id to fill in: they are
built by `store_for_area` under their own name, never under a made-up creditor id.

Secrets are never part of that config: it names the environment variables that hold them, so a YAML
file in git or a config dump in a log carries no password. The SFTP and S3 modules are imported only
when such a store is built, so the embedded (local) setup does not pay for paramiko or boto3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from creditflow.config.ids import is_bank_area_name, is_creditor_id
from creditflow.config.stores import StoreConfig
from creditflow.stores.base import AlreadyClaimed, FileStore, StoreError, StoreUnavailable
from creditflow.stores.local import LocalStore

__all__ = ["AlreadyClaimed", "StoreConfig", "StoreConfigError", "StoreUnavailable", "store_for_area",
           "store_from_config"]
# AlreadyClaimed, StoreUnavailable and StoreConfig are re-exported: older imports name this module.

if TYPE_CHECKING:
    from creditflow.config.settings import Settings


class StoreConfigError(StoreError, ValueError):
    """The store config cannot be turned into a store (missing environment variable, bad name)."""


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
    if not is_creditor_id(creditor_id):
        raise StoreConfigError(f"creditor id {creditor_id!r} is not a safe id")
    return _build(cfg, creditor_id, settings=settings, env=env, s3_client=s3_client)


def store_for_area(
    cfg: StoreConfig,
    area: str,
    *,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    s3_client: Any = None,
) -> FileStore:
    """The store of our own bank area `area` ("_name"). It serves every creditor, so `{creditor_id}`
    in its root/prefix is refused (Settings refuses it too); without a root/prefix it lives under
    its own name, as Settings.resolved_bank_areas places it."""
    if not is_bank_area_name(area):
        raise StoreConfigError(f"bank area name {area!r} is not '_' followed by a safe id")
    if cfg.serves_one_creditor():
        raise StoreConfigError(f"bank area {area}: its root/prefix cannot contain {{creditor_id}}")
    return _build(cfg, area, settings=settings, env=env, s3_client=s3_client)


def _build(
    cfg: StoreConfig,
    name: str,
    *,
    settings: Settings | None,
    env: Mapping[str, str] | None,
    s3_client: Any,
) -> FileStore:
    """`name` is already checked: it fills `{creditor_id}` and is the default folder/prefix."""
    env = os.environ if env is None else env

    if cfg.kind == "local":
        if cfg.root is not None:
            root = Path(cfg.root.format(creditor_id=name))
        else:
            if settings is None:
                from creditflow.config.settings import get_settings

                settings = get_settings()
            root = settings.resolved_dropzone_dir / name
        return LocalStore(root)

    if cfg.kind == "sftp":
        from creditflow.stores.sftp import SftpStore

        known: Any = cfg.known_host_key if cfg.known_host_key is not None else cfg.known_hosts_path
        return SftpStore(
            cfg.host or "",
            cfg.port,
            cfg.username or "",
            root=(cfg.root or "{creditor_id}").format(creditor_id=name),
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
        (cfg.prefix if cfg.prefix is not None else "{creditor_id}").format(creditor_id=name),
        client=s3_client,
        endpoint_url=cfg.endpoint_url,
        region=cfg.region,
        addressing_style=cfg.addressing_style,
        access_key_id=_secret(env, cfg.access_key_id_env),
        secret_access_key=_secret(env, cfg.secret_access_key_env),
        session_token=_secret(env, cfg.session_token_env),
        max_attempts=cfg.retries + 1,
    )
