"""Fake SendGrid v3 Mail Send (`POST /v3/mail/send`), checking bodies as SendGrid documents them.

Checked (docs.sendgrid.com "Mail Send" reference and its errors page): Bearer key; JSON body;
`personalizations` 1..1000, each with a non-empty `to`, every address valid and used once across
to/cc/bcc, at most 1000 recipients in all; `from.email`; `subject` unless every personalization has
one or a template is used; `content` items with a non-empty string value, text/plain first and
text/html right after it; `attachments` with base64 content (no line breaks), a filename, a known
disposition; `categories` at most 10 unique strings of at most 255 characters; `custom_args` with
string values only and at most 10,000 bytes. Unknown top-level keys are refused too: the real API
accepts fewer than a typo would suggest, and a strict fake catches the typo.

Answers: 202 with `X-Message-Id`, or 400 with `{"errors": [{"message", "field", "help"}]}`, or 401
for a wrong key. Outages are queued with `queue_reply`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from typing import Any

from fakes.http_server import FakeProvider, Recorded, Reply, bearer, json_body

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_EMAIL = re.compile(r"^[^@\s\"<>,;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
TOP_LEVEL_KEYS = {
    "personalizations", "from", "reply_to", "reply_to_list", "subject", "content", "attachments",
    "template_id", "headers", "categories", "custom_args", "send_at", "batch_id", "asm",
    "ip_pool_name", "mail_settings", "tracking_settings",
}


def sendgrid_error(status: int, errors: list[dict[str, Any]]) -> Reply:
    return Reply.json(status, {"errors": errors})


def rate_limited(retry_after: str = "2") -> Reply:
    return Reply.json(429, {"errors": [{"field": None, "message": "too many requests"}]},
                      **{"Retry-After": retry_after})


def server_error() -> Reply:
    return Reply.json(500, {"errors": [{"field": None, "message": "internal error"}]})


class FakeSendGrid(FakeProvider):
    def __init__(self, api_key: str = "SG.test-key") -> None:
        super().__init__()
        self.api_key = api_key
        self._ids = itertools.count(1)
        self.accepted: list[dict[str, Any]] = []

    def answer(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != "/v3/mail/send":
            return sendgrid_error(404, [{"field": None, "message": "not found"}])
        if bearer(request) != self.api_key:
            return sendgrid_error(401, [{
                "field": None,
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "help": None,
            }])
        body, problem = json_body(request)
        if problem:
            return sendgrid_error(400, [{"field": None, "message": problem, "help": HELP}])
        errors = validate_mail_send(body)
        if errors:
            return sendgrid_error(400, [{"message": m, "field": f, "help": HELP} for f, m in errors])
        if self.record_requests:
            self.accepted.append(body)
        return Reply(202, b"", {"X-Message-Id": f"fake{next(self._ids):018d}"})


def validate_mail_send(body: Any) -> list[tuple[str | None, str]]:
    """(field, message) for every documented rule the body breaks."""
    if not isinstance(body, dict):
        return [(None, "The request body must be a JSON object.")]
    errors: list[tuple[str | None, str]] = []
    for key in sorted(set(body) - TOP_LEVEL_KEYS):
        errors.append((key, f"Unknown field {key!r}."))
    uses_template = isinstance(body.get("template_id"), str)
    errors += _personalizations(body.get("personalizations"))
    errors += _address(body.get("from"), "from", required=True)
    if "reply_to" in body:
        errors += _address(body["reply_to"], "reply_to", required=True)

    personalizations = body.get("personalizations") or []
    every_one_has_subject = bool(personalizations) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"]
        for p in personalizations
    )
    subject = body.get("subject")
    if subject is not None and not isinstance(subject, str):
        errors.append(("subject", "The subject must be a string."))
    elif not subject and not every_one_has_subject and not uses_template:
        errors.append(("subject", "The subject is required. You can get around this requirement "
                                  "if you use a template with a subject defined or if every "
                                  "personalization has a subject defined."))
    errors += _content(body.get("content"), required=not uses_template)
    errors += _attachments(body.get("attachments"))
    errors += _categories(body.get("categories"))
    if "custom_args" in body:
        errors += _string_map(body["custom_args"], "custom_args", max_bytes=10_000)
    if "headers" in body:
        errors += _string_map(body["headers"], "headers")
    sandbox = body.get("mail_settings", {}).get("sandbox_mode", {}) if isinstance(
        body.get("mail_settings"), dict) else {}
    if sandbox and not isinstance(sandbox.get("enable"), bool):
        errors.append(("mail_settings.sandbox_mode.enable", "enable must be a boolean."))
    return errors


def _address(value: Any, field: str, *, required: bool) -> list[tuple[str | None, str]]:
    if value is None:
        return [(field, f"The {field} object must be provided.")] if required else []
    if not isinstance(value, dict):
        return [(field, f"The {field} must be an object with an email.")]
    errors = []
    email = value.get("email")
    if not isinstance(email, str) or not _EMAIL.match(email):
        errors.append((f"{field}.email", "Does not contain a valid address."))
    if "name" in value and not isinstance(value["name"], str):
        errors.append((f"{field}.name", "The name must be a string."))
    if set(value) - {"email", "name"}:
        errors.append((field, f"Unknown keys {sorted(set(value) - {'email', 'name'})}."))
    return errors


def _personalizations(value: Any) -> list[tuple[str | None, str]]:
    if not isinstance(value, list) or not value:
        return [("personalizations", "The personalizations field is required and must have at "
                                     "least one personalization.")]
    if len(value) > 1000:
        return [("personalizations", "The personalizations field may not exceed 1000 items.")]
    errors: list[tuple[str | None, str]] = []
    recipients = 0
    for index, item in enumerate(value):
        where = f"personalizations.{index}"
        if not isinstance(item, dict):
            errors.append((where, "A personalization must be an object."))
            continue
        if not isinstance(item.get("to"), list) or not item["to"]:
            errors.append((f"{where}.to", "The to array is required for all personalization "
                                          "objects, and must have at least one email object."))
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            addresses = item.get(kind, [])
            if not isinstance(addresses, list):
                errors.append((f"{where}.{kind}", f"{kind} must be an array."))
                continue
            for position, address in enumerate(addresses):
                errors += _address(address, f"{where}.{kind}.{position}", required=True)
                email = address.get("email") if isinstance(address, dict) else None
                if isinstance(email, str):
                    if email.lower() in seen:
                        errors.append((f"{where}.{kind}.{position}.email", "Each email address in "
                                       "the personalization block should be unique between to, "
                                       "cc, and bcc."))
                    seen.add(email.lower())
                recipients += 1
        if "custom_args" in item:
            errors += _string_map(item["custom_args"], f"{where}.custom_args", max_bytes=10_000)
        if "subject" in item and not isinstance(item["subject"], str):
            errors.append((f"{where}.subject", "The subject must be a string."))
    if recipients > 1000:
        errors.append(("personalizations", "The total number of recipients must be 1000 or less."))
    return errors


def _content(value: Any, *, required: bool) -> list[tuple[str | None, str]]:
    if value is None:
        return [("content", "Unless a valid template_id is provided, the content parameter is "
                            "required.")] if required else []
    if not isinstance(value, list) or (required and not value):
        return [("content", "The content must be a non-empty array.")]
    errors: list[tuple[str | None, str]] = []
    types = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            errors.append((f"content.{index}.type", "The content type is required."))
            continue
        if not isinstance(item.get("value"), str) or not item["value"]:
            errors.append((f"content.{index}.value", "The content value must be a string at "
                                                     "least one character in length."))
        types.append(item["type"])
    if len(set(types)) != len(types):
        errors.append(("content", "Each content type may only be used once."))
    if "text/plain" in types and types.index("text/plain") != 0:
        errors.append(("content.0.type", "The text/plain content type must be first."))
    if "text/html" in types and types.index("text/html") != (1 if "text/plain" in types else 0):
        errors.append(("content", "text/html must follow text/plain."))
    return errors


def _attachments(value: Any) -> list[tuple[str | None, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [("attachments", "attachments must be an array.")]
    errors: list[tuple[str | None, str]] = []
    for index, item in enumerate(value):
        where = f"attachments.{index}"
        if not isinstance(item, dict):
            errors.append((where, "An attachment must be an object."))
            continue
        content = item.get("content")
        if not isinstance(content, str) or not content:
            errors.append((f"{where}.content", "The attachment content is required."))
        elif "\n" in content or "\r" in content or not _BASE64.match(content):
            errors.append((f"{where}.content", "The attachment content must be base64 encoded "
                                               "without line breaks."))
        else:
            try:
                base64.b64decode(content, validate=True)
            except binascii.Error:
                errors.append((f"{where}.content", "The attachment content must be base64 "
                                                   "encoded."))
        if not isinstance(item.get("filename"), str) or not item["filename"]:
            errors.append((f"{where}.filename", "The attachment filename parameter is required."))
        if "type" in item and not isinstance(item["type"], str):
            errors.append((f"{where}.type", "The attachment type must be a string."))
        disposition = item.get("disposition", "attachment")
        if disposition not in ("attachment", "inline"):
            errors.append((f"{where}.disposition", "disposition must be inline or attachment."))
        if disposition == "inline" and not item.get("content_id"):
            errors.append((f"{where}.content_id", "content_id is required for inline."))
    return errors


def _categories(value: Any) -> list[tuple[str | None, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        return [("categories", "Categories must be an array of strings.")]
    errors: list[tuple[str | None, str]] = []
    if len(value) > 10:
        errors.append(("categories", "You may not have more than 10 categories per request."))
    if len(set(value)) != len(value):
        errors.append(("categories", "Categories must be unique."))
    if any(len(c) > 255 or not c for c in value):
        errors.append(("categories", "A category must be 1 to 255 characters."))
    return errors


def _string_map(value: Any, field: str, *, max_bytes: int | None = None) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return [(field, f"{field} must be an object.")]
    bad = [k for k, v in value.items() if not isinstance(v, str)]
    errors = [(f"{field}.{k}", f"{field} values must be strings.") for k in bad]
    if max_bytes is not None and len(json.dumps(value).encode()) > max_bytes:
        errors.append((field, f"{field} may not exceed {max_bytes} bytes."))
    return errors
