"""Configuration errors: raised at start, before any file is touched."""

from __future__ import annotations

from pathlib import Path


class ConfigError(Exception):
    """Something in the settings or a profile is wrong; the process should not start."""


class ProfileError(ConfigError):
    """A creditor profile file is wrong.

    Carries every problem found in the file, each as (field path, reason), so an operator fixes the
    whole file in one go instead of one error per restart.
    """

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}: {field}: {reason}" for field, reason in problems]
        super().__init__("invalid creditor profile\n  " + "\n  ".join(lines))
