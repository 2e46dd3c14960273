"""Channels: one adapter per provider, one `send()` each (see channels/base.py for the contract).

`build_channels(names, settings)` is the way in for the flows; the local outbox adapters are the
embedded default that writes what would be sent into a folder.
"""

from creditflow.channels.base import (
    Channel,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from creditflow.channels.local_outbox import LocalEmailOutbox, LocalPostOutbox, LocalSmsOutbox
from creditflow.channels.sms_text import SmsSegments, count_sms_segments
from creditflow.channels.spool import safe_name
from creditflow.channels.registry import (
    UnknownChannelError,
    build_channels,
    known_channels,
    register,
)

__all__ = [
    "Channel",
    "LocalEmailOutbox",
    "LocalPostOutbox",
    "LocalSmsOutbox",
    "PermanentSendError",
    "SendError",
    "SendResult",
    "SmsSegments",
    "TransientSendError",
    "UnknownChannelError",
    "build_channels",
    "count_sms_segments",
    "known_channels",
    "register",
    "safe_name",
]
