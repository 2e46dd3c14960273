"""The billing-intake flow: inbox files -> ledger -> PDFs -> messages, with a summary artifact."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from creditflow.config import Settings
from creditflow.config.ids import is_bank_area
from creditflow.config.settings import BRUSSELS
from creditflow.pipeline import dispatch, intake, render
from creditflow.pipeline.runtime import Runtime, open_runtime
from creditflow.pipeline.summary import RunSummary

_RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    """One runtime per process: Prefect tasks run in threads of the flow's process."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = open_runtime(Settings())
    return _RUNTIME


def reset_runtime() -> None:
    global _RUNTIME
    if _RUNTIME is not None:
        _RUNTIME.close()
    _RUNTIME = None


def _area_tag(area: str) -> str:
    """Creditor areas are tagged by creditor; our bank areas (names start with "_") by area."""
    return f"area:{area}" if is_bank_area(area) else f"creditor:{area}"


@task(name="find-new-files", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def find_new_files(settle: bool = False) -> intake.InboxScan:
    return intake.scan_inbox(runtime(), settle=settle)


@task(name="ingest-file", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def ingest_file(candidate: intake.Candidate) -> intake.FileOutcome:
    outcome = intake.ingest_file(runtime(), candidate.creditor_id, candidate.name)
    get_run_logger().info(
        "%s/%s: %s, %d accepted, %d rejected%s", candidate.creditor_id, candidate.name, outcome.state,
        outcome.accepted, outcome.rejected, f" ({outcome.reason})" if outcome.reason else "",
    )
    return outcome


@task(name="render-invoices", cache_policy=NO_CACHE)
def render_chunk() -> render.RenderOutcome:
    return render.render_pending(runtime())


@task(name="plan-deliveries", cache_policy=NO_CACHE)
def plan_chunk() -> dispatch.DispatchOutcome:
    return dispatch.plan_initial(runtime(), limit=runtime().settings.dispatch_chunk_size)


@task(name="send-messages", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def send_chunk() -> dispatch.DispatchOutcome:
    return dispatch.dispatch_due(runtime(), limit=runtime().settings.dispatch_chunk_size)


@task(name="seal-print-batches", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def seal_print_batches() -> int:
    """Yesterday's letters go to the print shop as one file per creditor (a no-op when already sent)."""
    yesterday = datetime.now(BRUSSELS).date() - timedelta(days=1)
    return sum(1 for batch in dispatch.flush_post(runtime(), yesterday) if batch.uploaded)


@flow(name="billing-intake", log_prints=True)
def billing_intake(max_chunks: int = 100, settle: bool = False) -> RunSummary:
    """Take every new billing file through claim, parse, validate, store, render, send and archive.

    `settle=True` (the scheduled deployment) applies the two-poll rule to fresh uploads; a manual
    run takes every file whose name says it is complete. A file that fails (after its task's
    retries) stays in the inbox; the other files go on, and the run then fails naming it.
    """
    summary = RunSummary()
    scan = find_new_files(settle)
    summary.waiting = len(scan.waiting)
    summary.refused = [(r.creditor_id, r.name, r.reason) for r in scan.refused]
    for candidate in scan.ready:
        state = ingest_file.with_options(
            task_run_name=f"ingest {candidate.creditor_id}/{candidate.name}",
            tags=[_area_tag(candidate.creditor_id)],
        )(candidate, return_state=True)
        if state.is_completed():
            outcome = state.result()
            if outcome.state != "skipped":
                summary.files.append(outcome)
        else:
            try:
                state.result()
                why = state.message or state.name
            except Exception as exc:  # the task's own exception, after its retries
                why = f"{type(exc).__name__}: {exc}"
            summary.failed.append((candidate.creditor_id, candidate.name, why))
    for _ in range(max_chunks):
        outcome = render_chunk()
        summary.rendered += outcome.rendered
        if outcome.rendered == 0:
            break
    for _ in range(max_chunks):
        planned = plan_chunk()
        summary.add_dispatch(planned)
        if planned.planned == 0 and not planned.no_channel:
            break
    for _ in range(max_chunks):
        sent = send_chunk()
        summary.add_dispatch(sent)
        if sent.sent == 0 and sent.retry_later == 0 and sent.fell_back == 0:
            break
    if seal_print_batches():
        print("Yesterday's letters were sent to the print shop")
    create_markdown_artifact(key="billing-intake-summary", markdown=summary.markdown(),
                             description="Files taken, rows accepted and rejected, PDFs rendered, messages sent")
    print(summary.one_line())
    if summary.failed:
        raise RuntimeError(summary.failure_message())
    return summary
