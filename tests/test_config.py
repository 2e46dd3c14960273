"""Settings and creditor profiles: a wrong profile stops the start with file, field and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from creditflow.cli import main
from creditflow.config import ProfileError, Settings, load_profile, load_profiles
from creditflow.config.ids import is_bank_area_name, is_creditor_id
from creditflow.config.profiles import MAPPABLE_FIELDS
from creditflow.parsers.schema import INVOICE_COLUMNS, MAPPED_FIELDS

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PROFILE = REPO / "sample_files" / "creditors" / "demo-utility.yaml"


def write_profile(folder: Path, name: str = "acme.yaml", **changes) -> Path:
    data = yaml.safe_load(SAMPLE_PROFILE.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        node, *path, last = [data, *dotted.split("__")]
        for part in path:
            node = node[part]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_mapping_vocabulary_is_the_canonical_schema():
    assert set(MAPPABLE_FIELDS) == set(MAPPED_FIELDS)
    assert set(MAPPED_FIELDS) - {"amount"} <= set(INVOICE_COLUMNS)


def test_sample_profile_loads():
    profile = load_profile(SAMPLE_PROFILE)
    assert profile.id == "demo-utility" and profile.iban.startswith("BE")
    assert profile.csv.column_for("invoice_number")


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"iban": "BE71096123456768"}, "iban", "not valid"),
        ({"vat": "BE0403170702"}, "vat", "not valid"),
        ({"id": "Demo Utility"}, "id", "lower case"),
        ({"language": "es"}, "language", "'nl', 'fr', 'en' or 'de'"),
        ({"channels": ["email", "fax"]}, "channels.1", "'email'"),
        ({"csv__date_format": "%Y"}, "csv.date_format", "%d"),
    ],
)
def test_a_wrong_profile_names_file_field_and_reason(tmp_path, change, field, reason):
    path = write_profile(tmp_path, **change)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert str(path) in message
    assert any(f == field and reason in r for f, r in caught.value.problems), caught.value.problems


def test_a_mapping_without_a_required_field_is_refused(tmp_path):
    data = yaml.safe_load(SAMPLE_PROFILE.read_text(encoding="utf-8"))
    amount_column = next(c for c, f in data["csv"]["columns"].items() if f == "amount")
    del data["csv"]["columns"][amount_column]
    path = tmp_path / "no-amount.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert any(f == "csv.columns" and "amount" in r for f, r in caught.value.problems)


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    write_profile(tmp_path, "a.yaml", id="a-co", iban="XX00")
    write_profile(tmp_path, "b.yaml", id="b-co", email_from="not-an-address")
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    fields = [f for f, _ in caught.value.problems]
    assert any(f.startswith("a.yaml: iban") for f in fields)
    assert any(f.startswith("b.yaml: email_from") for f in fields)


def test_duplicate_creditor_ids_are_refused(tmp_path):
    write_profile(tmp_path, "one.yaml", id="same-co")
    write_profile(tmp_path, "two.yaml", id="same-co")
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    assert "two.yaml" in str(caught.value) and "used by another profile" in str(caught.value)


@pytest.mark.parametrize(("text", "ok"), [
    ("acme", True), ("demo-utility", True), ("a1", True), ("9-lives", True), ("a" * 63, True),
    ("a", False), ("a" * 64, False), ("-acme", False), ("Acme", False), ("acme_x", False),
    ("acme/x", False), ("../acme", False), ("", False), ("acme\n", False), ("_bank", False),
])
def test_the_creditor_id_rule(text, ok):
    assert is_creditor_id(text) is ok


@pytest.mark.parametrize(("text", "ok"), [
    ("_bank", True), ("_bank-2", True), ("_" + "a" * 62, True),
    ("bank", False), ("_", False), ("_b", False), ("__bank", False), ("_-bank", False),
    ("_" + "a" * 63, False), ("_bank\n", False),
])
def test_a_bank_area_name_is_an_underscore_and_an_id(text, ok):
    assert is_bank_area_name(text) is ok


def test_a_profile_id_follows_the_creditor_id_rule(tmp_path):
    with pytest.raises(ProfileError) as caught:
        load_profile(write_profile(tmp_path, id="acme\n"))  # `$` alone would let the newline through
    reason = "must be 2-63 lower case letters, digits or dashes (it names folders)"
    assert ("id", reason) in caught.value.problems


def test_broken_yaml_is_a_profile_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(path)


def test_the_cli_stops_at_start_with_the_profile_problem(tmp_path, monkeypatch, capsys):
    write_profile(tmp_path, iban="BE00000000000000")
    monkeypatch.setenv("CREDITFLOW_PROFILES_DIR", str(tmp_path))
    monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path / "var"))
    assert main(["profiles"]) == 2
    err = capsys.readouterr().err
    assert "acme.yaml" in err and "iban" in err


def test_settings_from_the_environment_and_secrets_hidden(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("CREDITFLOW_LINK_SECRET", "a-secret-of-at-least-16-bytes")
    monkeypatch.delenv("CREDITFLOW_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'creditflow.db').resolve()}"
    assert "a-secret" not in repr(settings) and "a-secret" not in str(settings.model_dump())
    assert settings.link_key() == b"a-secret-of-at-least-16-bytes"


def test_a_short_link_secret_is_refused(monkeypatch):
    monkeypatch.setenv("CREDITFLOW_LINK_SECRET", "short")
    with pytest.raises(ValidationError, match="at least 16 bytes"):
        Settings()


def test_without_a_secret_a_local_key_is_made_once(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDITFLOW_LINK_SECRET", raising=False)
    settings = Settings(home=tmp_path)
    first = settings.link_key()
    assert len(first) >= 32 and settings.link_key() == first
    assert (tmp_path / "secrets" / "link.key").stat().st_mode & 0o077 == 0
