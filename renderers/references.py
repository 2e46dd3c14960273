"""Payment references: Belgian OGM/VCS and ISO 11649 RF creditor references.

The reference is what reconciliation matches a bank movement on, so a wrong check digit here means a
payment nobody can allocate. The arithmetic is python-stdnum's, through `creditflow.ogm_rf`, which the
ledger's generated references use too; this module only decides which spellings a human may type
(`+++…+++`, `***…***`, spaces, slashes, lower-case `rf`) and names the problem precisely when the
text is not a reference.
"""

from __future__ import annotations

from typing import Literal

from stdnum import iso11649
from stdnum.be import ogm_vcs
from stdnum.exceptions import InvalidChecksum, InvalidLength, ValidationError

from creditflow import ogm_rf
from creditflow.ogm_rf import OGM_BASE_MAX, RF_BODY_MAX_LEN, strip_written_ogm

ReferenceKind = Literal["ogm", "rf"]


class ReferenceError(ValueError):  # noqa: A001 - the name the renderers' callers use
    """Text that is not a valid OGM or RF reference; `code` is stable for reports."""

    def __init__(self, text: str, code: str, reason: str):
        self.text = text
        self.code = code
        self.reason = reason
        self.field = "structured_reference"
        super().__init__(f"structured_reference {text!r}: {reason} [{code}]")


def ogm_from_base(base: int) -> str:
    """The 12-digit OGM for a 10-digit base: `ogm_rf`'s rule, failing with the ReferenceError (code
    `invalid_base`) that the renderers' callers report."""
    try:
        return ogm_rf.ogm_from_base(base)
    except ValueError:
        reason = f"OGM base must be an integer 0..{OGM_BASE_MAX}"
        raise ReferenceError(str(base), "invalid_base", reason) from None


def format_ogm(ogm: str) -> str:
    """'090933755493' -> '+++090/9337/55493+++', the form Belgian payers recognise and type."""
    kind, compact = normalise_reference(ogm)
    if kind != "ogm":
        raise ReferenceError(ogm, "invalid_format", "an RF reference is not an OGM")
    return f"+++{ogm_vcs.format(compact)}+++"


def rf_from_base(base: str) -> str:
    """An ISO 11649 reference for a creditor's own alphanumeric reference (e.g. an invoice id).

    Blanks and lower case, as a person types them, are forgiven here; the arithmetic is `ogm_rf`'s.
    """
    try:
        return ogm_rf.rf_from_base("".join(base.split()).upper())
    except ValueError:
        reason = f"RF base must be 1..{RF_BODY_MAX_LEN} letters or digits"
        raise ReferenceError(base, "invalid_base", reason) from None


def format_rf(rf: str) -> str:
    """'RF18539007547034' -> 'RF18 5390 0754 7034' (groups of 4, as printed on paper)."""
    kind, compact = normalise_reference(rf)
    if kind != "rf":
        raise ReferenceError(rf, "invalid_format", "an OGM is not an RF reference")
    return iso11649.format(compact)


def format_reference(reference: str, kind: ReferenceKind) -> str:
    """The printed form of a compact reference of either kind."""
    return format_ogm(reference) if kind == "ogm" else format_rf(reference)


def normalise_reference(text: str) -> tuple[ReferenceKind, str]:
    """Classify and compact a reference typed by a creditor or a payer.

    Returns ("ogm", 12 digits) or ("rf", upper-case compact RF); anything else raises ReferenceError.
    The OGM spellings are `ogm_rf.WRITTEN_OGM_SEPARATORS`, the ones billing-file validation accepts.
    """
    if text is None or not str(text).strip():
        raise ReferenceError("" if text is None else str(text), "empty", "no reference given")
    raw = str(text)
    squeezed = "".join(raw.split())
    if squeezed[:2].upper() == "RF":
        try:
            return "rf", iso11649.validate(squeezed).upper()
        except ValidationError as exc:
            raise ReferenceError(raw, _code(exc), f"not a valid ISO 11649 RF reference ({exc})") from None
    candidate = strip_written_ogm(squeezed)
    if not candidate.isdigit():
        raise ReferenceError(raw, "invalid_format", "neither an OGM (12 digits) nor an RF reference")
    try:
        return "ogm", ogm_vcs.validate(candidate)
    except ValidationError as exc:
        raise ReferenceError(raw, _code(exc), f"not a valid OGM/VCS ({exc})") from None


def is_valid_reference(text: str) -> bool:
    try:
        normalise_reference(text)
    except ReferenceError:
        return False
    return True


def _code(exc: ValidationError) -> str:
    if isinstance(exc, InvalidChecksum):
        return "invalid_checksum"
    if isinstance(exc, InvalidLength):
        return "invalid_length"
    return "invalid_format"
