"""The nightly-reconciliation flow: statements in, payments on invoices, reports to finance.

Coarse tasks around the plain steps of `creditflow.pipeline.reconcile` (collect, import, match,
book, report per creditor) and a markdown artifact with the night's figures. Schedule it nightly
with a deployment cron (e.g. `0 6 * * *`, Europe/Brussels) once statements land overnight.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from creditflow.flows.intake import runtime
from creditflow.pipeline import reconcile, statements_intake
from creditflow.pipeline.statements_intake import TakenStatement


@task(name="collect-statements", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def collect(paths: list[str] | None) -> list[TakenStatement]:
    """The given files, else every statement parked by intake in the creditors' statements/ folders."""
    if paths:
        return [TakenStatement(None, None, Path(p).name, None, Path(p).read_bytes()) for p in paths]
    return statements_intake.collect_statements(runtime())


@task(name="finish-statements", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def finish(taken: list[TakenStatement], imported: reconcile.ImportReport) -> list[str]:
    return statements_intake.finish_night(runtime(), [t for t in taken if t.file_id is not None],
                                          imported.file_errors)


@task(name="import-statements", cache_policy=NO_CACHE)
def import_task(statements: list[TakenStatement]) -> reconcile.ImportReport:
    parsed = [reconcile.parse_statement_file(s.name, s.data) for s in statements]
    return reconcile.import_statements(runtime(), parsed)


@task(name="match-movements", cache_policy=NO_CACHE)
def match_task(imported: reconcile.ImportReport) -> reconcile.NightMatch:
    return reconcile.match_night(runtime(), imported)


@task(name="book-allocations", cache_policy=NO_CACHE)
def book_task(night: reconcile.NightMatch) -> reconcile.BookOutcome:
    return reconcile.book_night(runtime(), night)


@task(name="report-creditor", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30)
def report_task(creditor_id: str, imported: reconcile.ImportReport):
    from creditflow.pipeline.finance_reports import deliver_report

    return deliver_report(runtime(), creditor_id, imported, as_of=reconcile.business_date())


@flow(name="nightly-reconciliation", log_prints=True)
def nightly_reconciliation(paths: list[str] | None = None) -> reconcile.NightSummary:
    statements = collect(paths)
    imported = import_task(statements)
    night = match_task(imported)
    booked = book_task(night)
    summary = reconcile.NightSummary(imported, booked, stage_counts=reconcile.stage_counts(night))
    for creditor_id in reconcile.report_creditors(runtime(), imported):
        summary.reports.append(report_task.with_options(task_run_name=f"report {creditor_id}",
                                                        tags=[f"creditor:{creditor_id}"])(creditor_id, imported))
    finish(statements, imported)
    for issue in imported.issues:
        get_run_logger().warning(issue)
    create_markdown_artifact(key="nightly-reconciliation", markdown=summary.markdown(),
                             description="Statements imported, payments matched and booked, reports sent")
    return summary
