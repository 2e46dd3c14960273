"""Settings from the environment and per-creditor profiles; imports nothing else of ours."""

from creditflow.config.errors import ConfigError, ProfileError
from creditflow.config.profiles import (
    Address,
    CreditorProfile,
    CsvMapping,
    load_profile,
    load_profiles,
)
from creditflow.config.settings import Settings, get_settings

__all__ = [
    "Address",
    "ConfigError",
    "CreditorProfile",
    "CsvMapping",
    "ProfileError",
    "Settings",
    "get_settings",
    "load_profile",
    "load_profiles",
]
