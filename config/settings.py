"""Process-wide settings, read from `CREDITFLOW_*` environment variables.

Everything has a default that runs the embedded setup: a data folder `./var` holding the SQLite
ledger, the local drop zones, the rendered documents and the local outbox. Production sets
`CREDITFLOW_DATABASE_URL` (PostgreSQL) and the provider credentials; secrets are `SecretStr` so a
settings object printed into a log shows `**********`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditflow.config.ids import is_bank_area_name
from creditflow.config.stores import StoreConfig

BRUSSELS = ZoneInfo("Europe/Brussels")
"""Business dates (issue, due, paid) are Brussels dates; timestamps are stored in UTC."""

DEFAULT_BANK_AREA = "_bank"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_", extra="ignore")

    home: Path = Field(Path("var"), description="Data folder for the embedded defaults.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the ledger; default: a SQLite file in `home`."
    )
    profiles_dir: Path = Field(
        Path("sample_files/creditors"), description="Folder of creditor profile YAML files."
    )
    dropzone_dir: Path | None = Field(
        None, description="Local drop zones, one area per creditor; default: home/dropzone."
    )
    outbox_dir: Path | None = Field(
        None, description="Local outbox channel folder; default: home/outbox."
    )
    documents_dir: Path | None = Field(
        None, description="Rendered PDFs; default: home/documents."
    )
    link_secret: SecretStr | None = Field(
        None,
        description="HMAC key for payment links. When unset, a random key is created once in "
        "home/secrets/link.key (fine for the embedded setup, not for production).",
    )
    payment_base_url: str = Field(
        "https://pay.creditflow.example/p/", description="Where payment links point."
    )
    link_valid_days: int = Field(90, ge=1, description="Payment links expire this long after the due date.")
    bank_areas: dict[str, StoreConfig] | None = Field(
        None,
        description="Our own drop zones for bank statement files (CODA, CAMT.053), by area name "
        "(starting with '_'), as JSON in CREDITFLOW_BANK_AREAS, e.g. "
        '\'{"_bank": {"kind": "sftp", "host": ..., "root": "bank"}}\'. '
        "Default: one local area `_bank` in the drop-zone folder; `{}` turns bank areas off.",
    )
    render_workers: int = Field(
        0, ge=0, description="Processes for PDF rendering; 0 = one per core for large batches."
    )
    render_chunk_size: int = Field(1000, ge=1, description="Invoices per render task.")
    dispatch_chunk_size: int = Field(1000, ge=1, description="Messages per dispatch task.")

    @field_validator("link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("must be at least 16 bytes: payment links are signed with it")
        return value

    @field_validator("bank_areas")
    @classmethod
    def _bank_area_names(cls, value: dict[str, StoreConfig] | None) -> dict[str, StoreConfig] | None:
        for name, store in (value or {}).items():
            if not is_bank_area_name(name):
                raise ValueError(f"bank area name {name!r} must be '_' and a creditor-id-shaped name "
                                 "(lower case letters, digits and dashes, 63 characters at most; "
                                 "the leading '_' keeps it apart from creditor ids)")
            if store.serves_one_creditor():
                raise ValueError(f"bank area {name}: a bank area serves every creditor; "
                                 "its root/prefix cannot contain {creditor_id}")
        return value

    @property
    def resolved_bank_areas(self) -> dict[str, StoreConfig]:
        """Area name -> store; an area without root/prefix lives at <dropzone>/<name> (local),
        <name> in the SFTP login folder, or prefix <name> in the bucket."""
        areas = {DEFAULT_BANK_AREA: StoreConfig()} if self.bank_areas is None else self.bank_areas
        resolved = {}
        for name, store in areas.items():
            if store.kind == "s3":
                resolved[name] = store if store.prefix is not None else store.model_copy(update={"prefix": name})
            elif store.root is None:
                root = str(self.resolved_dropzone_dir / name) if store.kind == "local" else name
                resolved[name] = store.model_copy(update={"root": root})
            else:
                resolved[name] = store
        return resolved

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'creditflow.db').resolve()}"

    @property
    def resolved_dropzone_dir(self) -> Path:
        return self.dropzone_dir or self.home / "dropzone"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.home / "outbox"

    @property
    def resolved_documents_dir(self) -> Path:
        return self.documents_dir or self.home / "documents"

    def link_key(self) -> bytes:
        """The payment-link HMAC key: from the environment, else a local key made once."""
        if self.link_secret is not None:
            return self.link_secret.get_secret_value().encode()
        path = self.home / "secrets" / "link.key"
        if not path.exists():
            import os
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: of two processes starting at once, one writes the key, both read it
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
