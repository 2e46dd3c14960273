"""One day of collections: plan today's first reminders, then send what the outbox has due.

The steps live in pipeline.collections (what is due, holds, deadlines) and pipeline.dispatch
(sending); this module strings them together, once, for both callers: `run_collections` calls them
directly (no Prefect: tests, scripts), the daily-collections flow hands in the same steps wrapped
as Prefect tasks, so each chunk keeps its own task run and retries. It is a module of its own
because dispatch imports collections (a reminder is re-checked and re-dated at send time), so
collections cannot import dispatch back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from creditflow.pipeline.collections import ReminderPlan, business_today, plan_reminders
from creditflow.pipeline.dispatch import DispatchOutcome, dispatch_due
from creditflow.pipeline.runtime import Runtime


@dataclass
class CollectionsSummary:
    """What one daily-collections run did, for the Prefect artifact."""

    business_date: date
    plan: ReminderPlan = field(default_factory=ReminderPlan)
    sent: int = 0  # every outbox message sent by the run (reminders, and initial retries due)
    skipped: int = 0  # reminders dropped at send time: paid or held since planning
    retry_later: int = 0
    fell_back: int = 0
    sent_by_channel: dict[str, int] = field(default_factory=dict)
    no_channel: list[str] = field(default_factory=list)

    def add_dispatch(self, outcome: DispatchOutcome) -> None:
        self.sent += outcome.sent
        self.skipped += outcome.skipped
        self.retry_later += outcome.retry_later
        self.fell_back += outcome.fell_back
        self.no_channel.extend(outcome.no_channel)
        for channel, n in outcome.by_channel.items():
            self.sent_by_channel[channel] = self.sent_by_channel.get(channel, 0) + n

    def one_line(self) -> str:
        return (f"{self.business_date.isoformat()}: {self.plan.planned} first reminder(s) planned, "
                f"{len(self.plan.held)} on hold, {self.sent} message(s) sent"
                + (f", {self.skipped} skipped (paid or held meanwhile)" if self.skipped else "")
                + (f", {self.retry_later} to retry" if self.retry_later else "")
                + (f", {len(self.plan.no_channel) + len(self.no_channel)} without a channel"
                   if self.plan.no_channel or self.no_channel else ""))

    def markdown(self) -> str:
        lines = ["# Daily collections", "", self.one_line(), "",
                 "| channel | reminders planned | messages sent |", "|---|---:|---:|"]
        channels = sorted(set(self.plan.by_channel) | set(self.sent_by_channel))
        lines += [f"| {c} | {self.plan.by_channel.get(c, 0)} | {self.sent_by_channel.get(c, 0)} |"
                  for c in channels] or ["| (none) | 0 | 0 |"]
        if self.plan.held:
            lines += ["", "**On hold (not reminded):** " + ", ".join(self.plan.held[:50])]
        lost = self.plan.no_channel + self.no_channel
        if lost:
            lines += ["", "**No channel can reach these debtors:** " + ", ".join(lost[:50])]
        return "\n".join(lines) + "\n"


def collect_day(today: date, *, plan: Callable[[date], ReminderPlan],
                send_chunk: Callable[[], DispatchOutcome], max_chunks: int) -> CollectionsSummary:
    """Plan once, then send chunk after chunk until one makes no progress (or `max_chunks`, so a
    channel that keeps failing cannot hold the run forever; what is left is due on the next run)."""
    summary = CollectionsSummary(today, plan(today))
    for _ in range(max_chunks):
        sent = send_chunk()
        summary.add_dispatch(sent)
        if not sent.progressed:
            break
    return summary


def run_collections(rt: Runtime, *, today: date | None = None, now: datetime | None = None,
                    max_chunks: int = 100) -> CollectionsSummary:
    """Plan today's first reminders, then send what the outbox has due (without Prefect)."""
    return collect_day(
        today or business_today(now),
        plan=lambda day: plan_reminders(rt, today=day),
        send_chunk=lambda: dispatch_due(rt, limit=rt.settings.dispatch_chunk_size, now=now),
        max_chunks=max_chunks,
    )
