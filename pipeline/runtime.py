"""Everything a step needs, opened once per process: settings, profiles, ledger, stores, channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from creditflow.channels.base import Channel
from creditflow.config import CreditorProfile, Settings, load_profiles
from creditflow.ledger import db
from creditflow.ledger.files import upsert_creditor
from creditflow.stores import LocalStore


@dataclass
class Runtime:
    settings: Settings
    profiles: dict[str, CreditorProfile]
    engine: Engine
    sessions: sessionmaker[Session]
    _channels: dict[str, Channel] | None = field(default=None, repr=False)

    def store_for(self, creditor_id: str) -> LocalStore:
        return LocalStore(self.settings.resolved_dropzone_dir / creditor_id)

    def documents_dir(self, creditor_id: str) -> Path:
        return self.settings.resolved_documents_dir / creditor_id

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
    for profile_id in profiles:
        LocalStore(settings.resolved_dropzone_dir / profile_id)  # creates the area's folders
    return Runtime(settings, profiles, engine, sessions)
