"""Everything a step needs, opened once per process: settings, profiles, ledger, stores, channels."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from creditflow.channels.base import Channel
from creditflow.config import ConfigError, CreditorProfile, Settings, load_profiles
from creditflow.config.ids import is_bank_area
from creditflow.config.stores import StoreConfig
from creditflow.ledger import db
from creditflow.ledger.files import upsert_creditor
from creditflow.stores.base import INBOX, FileStore
from creditflow.stores.factory import store_for_area, store_from_config

_DEFAULT_STORE = StoreConfig()


@dataclass
class Runtime:
    settings: Settings
    profiles: dict[str, CreditorProfile]
    engine: Engine
    sessions: sessionmaker[Session]
    _channels: dict[str, Channel] | None = field(default=None, repr=False)
    _stores: dict[str, FileStore] = field(default_factory=dict, repr=False)
    _stores_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def store_config(self, creditor_id: str) -> StoreConfig:
        return self.profiles[creditor_id].store or _DEFAULT_STORE

    def store_for(self, creditor_id: str) -> FileStore:
        """The creditor's own area, built once: one SFTP connection or S3 client per creditor,
        reused by every task of the process (tasks run in threads, hence the lock)."""
        with self._stores_lock:
            store = self._stores.get(creditor_id)
            if store is None:
                if creditor_id not in self.profiles:
                    raise KeyError(f"no creditor profile {creditor_id!r}")
                store = store_from_config(self.store_config(creditor_id), creditor_id,
                                          settings=self.settings)
                self._stores[creditor_id] = store
            return store

    def bank_area_names(self) -> list[str]:
        return sorted(self.settings.resolved_bank_areas)

    def bank_store_config(self, area: str) -> StoreConfig:
        return self.settings.resolved_bank_areas[area]

    def bank_store(self, area: str) -> FileStore:
        """Our own bank area `area` (statements for any creditor's account), built once like a
        creditor's and cached beside them: the name's leading '_' keeps it apart from every id."""
        with self._stores_lock:
            store = self._stores.get(area)
            if store is None:
                cfg = self.settings.resolved_bank_areas.get(area)
                if cfg is None:
                    raise KeyError(f"no bank area {area!r}")
                store = store_for_area(cfg, area, settings=self.settings)
                self._stores[area] = store
            return store

    def area_store(self, area: str) -> FileStore:
        """A bank area ("_name") or a creditor's area (its id)."""
        return self.bank_store(area) if is_bank_area(area) else self.store_for(area)

    def documents_dir(self, creditor_id: str) -> Path:
        return self.settings.resolved_documents_dir / creditor_id

    def creditor_pdf_path(self, creditor_id: str, invoice_id: int) -> Path:
        """Where intake keeps the PDF a creditor embedded in a UBL invoice (profile.send_own_pdf)."""
        return self.documents_dir(creditor_id) / "from-creditor" / f"{invoice_id}.pdf"

    def channels(self) -> dict[str, Channel]:
        if self._channels is None:
            from creditflow.channels.registry import build_channels, known_channels

            wanted = {name for p in self.profiles.values() for name in p.channels}
            # A profile may name a channel no adapter serves yet; its deliveries fail permanently
            # and move on to the next channel (pipeline.dispatch), instead of stopping the run.
            self._channels = build_channels(sorted(wanted & set(known_channels())), self.settings)
        return self._channels

    def close(self) -> None:
        for channel in (self._channels or {}).values():
            channel.close()
        with self._stores_lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            close = getattr(store, "close", None)  # SFTP holds a connection; local and S3 need nothing
            if close is not None:
                close()
        self.engine.dispose()


def open_runtime(settings: Settings | None = None) -> Runtime:
    """Load and check every profile (a wrong one stops here), migrate the ledger, register creditors."""
    settings = settings or Settings()
    profiles = load_profiles(settings.profiles_dir)
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        for profile in profiles.values():
            upsert_creditor(
                session,
                id=profile.id,
                legal_name=profile.legal_name,
                vat=profile.vat,
                iban=profile.iban,
                bic=profile.bic,
                language=profile.language,
            )
    rt = Runtime(settings, profiles, engine, sessions)
    try:
        check_areas_distinct(rt)
        for profile_id in profiles:
            if rt.store_config(profile_id).kind == "local":
                rt.store_for(profile_id)  # creates the area's folders; remote stores connect on use
        for area in rt.bank_area_names():
            if rt.bank_store_config(area).kind == "local":
                rt.bank_store(area)
    except BaseException:
        rt.close()
        raise
    return rt


def check_areas_distinct(rt: Runtime) -> None:
    """Two creditors sharing one inbox would read each other's files: refuse to start. A bank
    area sharing a creditor's inbox would read billing files as bank files: refused the same way.

    Compared through `describe`, which names server + path (or bucket + key), without connecting.
    """
    owners: dict[str, str] = {}
    for area in [*sorted(rt.profiles), *rt.bank_area_names()]:
        where = rt.area_store(area).describe(INBOX, "x")
        if where in owners:
            raise ConfigError(
                f"areas {owners[where]} and {area} have the same drop zone "
                f"({where.removesuffix('/x')}); put {{creditor_id}} in the store's root or prefix, "
                "and give each bank area a root/prefix of its own"
            )
        owners[where] = area
