"""The daily-collections flow: today's first reminders planned, sent, and counted in an artifact.

It must run after the nightly reconciliation has booked the night's payments (the schedules in
flows/serve.py put it at 09:00, the reconciliation at 02:00): a payment booked late would otherwise
get a reminder. Re-running it is safe: a reminder's outbox key exists once per invoice.
"""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from creditflow.flows.intake import runtime
from creditflow.pipeline import collections, dispatch
from creditflow.pipeline.collections_day import CollectionsSummary, collect_day


@task(name="plan-reminders", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30)
def plan_task(today: date) -> collections.ReminderPlan:
    return collections.plan_reminders(runtime(), today=today)


@task(name="send-reminders", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def send_task() -> dispatch.DispatchOutcome:
    return dispatch.dispatch_due(runtime(), limit=runtime().settings.dispatch_chunk_size)


@flow(name="daily-collections", log_prints=True)
def daily_collections(business_date: str | None = None, max_chunks: int = 100) -> CollectionsSummary:
    """`business_date` (YYYY-MM-DD, default today in Brussels) is the day the grace period is
    counted to; give it to catch up a missed day."""
    today = date.fromisoformat(business_date) if business_date else collections.business_today()
    summary = collect_day(today, plan=plan_task, send_chunk=send_task, max_chunks=max_chunks)
    create_markdown_artifact(key="daily-collections", markdown=summary.markdown(),
                             description="First reminders planned, held and sent")
    print(summary.one_line())
    return summary
