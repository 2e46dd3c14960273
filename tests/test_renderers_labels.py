"""Labels per language and Belgian amount/date formatting."""

from datetime import date

import pytest

from creditflow.renderers.labels import LABELS, LANGUAGES, format_amount, format_date, format_iban, labels_for


def test_all_languages_have_the_same_keys_and_no_empty_label():
    assert set(LABELS) == set(LANGUAGES) == {"nl", "fr", "en", "de"}
    keys = set(LABELS["nl"])
    for language in LANGUAGES:
        assert set(LABELS[language]) == keys, language
        assert all(value.strip() for value in LABELS[language].values()), language


def test_belgian_wording_of_the_structured_communication():
    assert labels_for("nl")["reference_ogm"] == "Gestructureerde mededeling"
    assert labels_for("fr")["reference_ogm"] == "Communication structurée"
    assert labels_for("de")["reference_ogm"] == "Strukturierte Mitteilung"
    assert labels_for("xx") is LABELS["nl"]


@pytest.mark.parametrize(
    ("cents", "language", "text"),
    [(123456, "nl", "€ 1.234,56"), (123456, "fr", "€ 1.234,56"), (123456, "de", "€ 1.234,56"),
     (123456, "en", "€1,234.56"), (5, "nl", "€ 0,05"), (100000000, "nl", "€ 1.000.000,00"),
     (-5000, "nl", "-€ 50,00"), (-5000, "en", "-€50.00")],
)
def test_format_amount(cents, language, text):
    assert format_amount(cents, "EUR", language) == text


def test_format_amount_other_currency_and_dates_and_iban():
    assert format_amount(1050, "USD", "nl") == "USD 10,50"
    assert format_amount(1050, "USD", "en") == "USD 10.50"
    assert format_date(date(2026, 3, 5), "fr") == "05/03/2026"
    assert format_date(date(2026, 3, 5), "en") == "2026-03-05"
    assert format_iban("be71096123456769") == "BE71 0961 2345 6769"
