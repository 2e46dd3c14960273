"""Fake CM.com Business Messaging gateway (`POST /v1.0/message`), checking the documented JSON.

Checked (developers.cm.com "Business Messaging" / "Responses & Errors"): product token in the
`X-CM-PRODUCTTOKEN` header or in `messages.authentication.producttoken`; `messages.msg` a non-empty
array; each msg with `from` (at most 11 alphanumerics or 16 digits), `to` a non-empty array of
`{"number": "00<country><number>"}`, `body.content` a non-empty string and `body.type` "auto" or
absent, `reference` 1-32 alphanumerics or dashes, `allowedChannels` ["SMS"], and the part bounds
`minimumNumberOfMessageParts` <= `maximumNumberOfMessageParts` within 1..8.

Answers like CM: 200 `{"details", "errorCode": 0, "messages": [{"to", "status": "Accepted",
"reference", "parts", "messageDetails", "messageErrorCode": 0}]}`; a bad token 401 with errorCode
101; a malformed request 400 with errorCode 201/202/203 and per-message messageErrorCode 300-304.
`refuse_numbers` makes chosen numbers fail with 302 ("invalid MSISDN"), like a dead number.
"""

from __future__ import annotations

import re
from typing import Any

from fakes.http_server import FakeProvider, Recorded, Reply, json_body

_REFERENCE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_NUMBER = re.compile(r"^00[1-9][0-9]{6,14}$")
_ALPHA_SENDER = re.compile(r"^[A-Za-z0-9 ]{1,11}$")
_DIGIT_SENDER = re.compile(r"^\+?[0-9]{1,16}$")


def cm_error(status: int, code: int, details: str, messages: list[dict] | None = None) -> Reply:
    return Reply.json(status, {"details": details, "errorCode": code, "messages": messages or []})


class FakeCmGateway(FakeProvider):
    path = "/v1.0/message"

    def __init__(self, product_token: str = "00000000-0000-0000-0000-000000000000") -> None:
        super().__init__()
        self.product_token = product_token
        self.refuse_numbers: set[str] = set()
        self.accepted: list[dict[str, Any]] = []

    def answer(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != self.path:
            return cm_error(404, 999, "Not found")
        body, problem = json_body(request)
        if problem:
            return cm_error(400, 202, f"This request is malformed: {problem}")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), dict):
            return cm_error(400, 202, "This request is malformed: no messages object")
        messages = body["messages"]
        token = request.headers.get("x-cm-producttoken") or (
            (messages.get("authentication") or {}).get("producttoken")
            if isinstance(messages.get("authentication"), dict) else None
        )
        if token != self.product_token:
            return cm_error(401, 101, "Authentication of the request failed")
        msgs = messages.get("msg")
        if not isinstance(msgs, list) or not msgs:
            return cm_error(400, 203, "The request's MSG array is incorrect")

        results, failed = [], False
        for msg in msgs:
            code, details = _check_msg(msg, self.refuse_numbers)
            to = msg.get("to") if isinstance(msg, dict) else None
            number = to[0].get("number") if isinstance(to, list) and to and isinstance(
                to[0], dict) else None
            results.append({
                "to": number,
                "status": "Accepted" if code == 0 else "Rejected",
                "reference": msg.get("reference") if isinstance(msg, dict) else None,
                "parts": _parts(msg) if code == 0 else 0,
                "messageDetails": details,
                "messageErrorCode": code,
            })
            failed = failed or code != 0
        if failed:
            return cm_error(400, 201, "This request has one or more errors in its messages. Some "
                                      "or all messages have not been sent.", results)
        if self.record_requests:
            self.accepted.extend(msgs)
        return Reply.json(200, {"details": f"Created {len(results)} message(s)", "errorCode": 0,
                                "messages": results})


def _check_msg(msg: Any, refused: set[str]) -> tuple[int, str | None]:
    if not isinstance(msg, dict):
        return 304, "A message must be an object"
    sender = msg.get("from")
    if not isinstance(sender, str) or not (
        _ALPHA_SENDER.match(sender) or _DIGIT_SENDER.match(sender)
    ):
        return 300, "This MSG has an invalid From field"
    to = msg.get("to")
    if not isinstance(to, list) or not to or not all(isinstance(t, dict) for t in to):
        return 301, "This MSG has an invalid To field"
    for recipient in to:
        number = recipient.get("number")
        if not isinstance(number, str) or not _NUMBER.match(number) or number in refused:
            return 302, "This MSG has an invalid MSISDN in the To field"
    body = msg.get("body")
    if (not isinstance(body, dict) or not isinstance(body.get("content"), str)
            or not body["content"] or body.get("type", "auto") not in ("auto", "plain")):
        return 303, "This MSG has an invalid Body field"
    reference = msg.get("reference")
    if reference is not None and (not isinstance(reference, str) or not _REFERENCE.match(reference)):
        return 304, "This MSG has an invalid field: reference (1-32 alphanumerics or dashes)"
    channels = msg.get("allowedChannels")
    if channels is not None and channels != ["SMS"]:
        return 304, "This MSG has an invalid field: allowedChannels"
    low = msg.get("minimumNumberOfMessageParts", 1)
    high = msg.get("maximumNumberOfMessageParts", 1)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8 for v in (low, high)) \
            or low > high:
        return 304, "This MSG has an invalid field: message parts must be 1..8, min <= max"
    return 0, None


def _parts(msg: dict) -> int:
    from creditflow.channels.sms_text import count_sms_segments

    return count_sms_segments(msg["body"]["content"]).segments
