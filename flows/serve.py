"""`creditflow serve`: the always-on process that polls the drop zones and runs the nightly work.

One process serves every deployment (Prefect's `serve`): it registers them with the Prefect API
(PREFECT_API_URL, so they show in the UI with their schedules) and runs their flow runs as they
come due. Only real flows are deployed: billing-intake every minute (the two-poll settle rule on),
the nightly reconciliation, and the daily collections run (first reminders). Collections must
come after the reconciliation (a payment booked at night must stop its reminder): the defaults are
02:00 and 09:00, and a --collect-at earlier than --reconcile-at is refused. Overlapping runs of the
same deployment are prevented by a concurrency limit of one: a slow poll delays the next one rather
than racing it (racing would still be safe, see pipeline.intake, only wasteful).
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from creditflow.config import Settings

BUSINESS_TIMEZONE = "Europe/Brussels"
INTAKE_DEPLOYMENT = "poll-drop-zones"
RECONCILE_DEPLOYMENT = "nightly"
COLLECTIONS_DEPLOYMENT = "daily"
_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def cron_at(hh_mm: str) -> str:
    """"02:30" -> "30 2 * * *"; anything else is refused with the expected form."""
    match = _HH_MM.match(hh_mm.strip())
    if not match:
        raise ValueError(f"{hh_mm!r} is not a time of day HH:MM (00:00-23:59)")
    return f"{int(match.group(2))} {int(match.group(1))} * * *"


def _minutes(hh_mm: str) -> int:
    minute, hour = (int(part) for part in cron_at(hh_mm).split()[:2])
    return hour * 60 + minute


def build_deployments(settings: Settings, *, intake_interval: float = 60,
                      reconcile_at: str = "02:00", collect_at: str = "09:00") -> list[Any]:
    """The deployments `serve` registers; built without contacting the Prefect API."""
    from prefect.schedules import Cron, Interval

    from creditflow.config import load_profiles
    from creditflow.flows.collections import daily_collections
    from creditflow.flows.intake import billing_intake
    from creditflow.flows.reconcile import nightly_reconciliation

    if intake_interval <= 0:
        raise ValueError("the intake interval must be a positive number of seconds")
    if _minutes(collect_at) <= _minutes(reconcile_at):
        raise ValueError(f"collections ({collect_at}) must run after the nightly reconciliation "
                         f"({reconcile_at}), or paid invoices get reminders")
    creditor_tags = [f"creditor:{cid}" for cid in sorted(load_profiles(settings.profiles_dir))]
    deployments = [
        billing_intake.to_deployment(
            name=INTAKE_DEPLOYMENT,
            schedule=Interval(timedelta(seconds=intake_interval), timezone=BUSINESS_TIMEZONE),
            parameters={"settle": True},
            tags=["intake", *creditor_tags],
            concurrency_limit=1,
            description="Polls every creditor's drop zone: billing files in, invoices and messages out; "
                        "bank statements parked for reconciliation.",
        )
    ]
    deployments.append(
        nightly_reconciliation.to_deployment(
            name=RECONCILE_DEPLOYMENT,
            schedule=Cron(cron_at(reconcile_at), timezone=BUSINESS_TIMEZONE),
            tags=["reconciliation", *creditor_tags],
            concurrency_limit=1,
            description=f"Nightly bank reconciliation at {reconcile_at} {BUSINESS_TIMEZONE}.",
        )
    )
    deployments.append(
        daily_collections.to_deployment(
            name=COLLECTIONS_DEPLOYMENT,
            schedule=Cron(cron_at(collect_at), timezone=BUSINESS_TIMEZONE),
            tags=["collections", *creditor_tags],
            concurrency_limit=1,
            description=f"First reminders for overdue invoices, daily at {collect_at} {BUSINESS_TIMEZONE} "
                        f"(after the reconciliation at {reconcile_at}).",
        )
    )
    return deployments


def serve_all(settings: Settings, *, intake_interval: float = 60, reconcile_at: str = "02:00",
              collect_at: str = "09:00") -> None:
    """Register the deployments and run their flow runs until interrupted (Ctrl-C / SIGTERM)."""
    from prefect import serve

    deployments = build_deployments(settings, intake_interval=intake_interval, reconcile_at=reconcile_at,
                                    collect_at=collect_at)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    print(f"Serving {names}; open the Prefect UI to watch the runs (Ctrl-C stops).")
    serve(*deployments)


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import os

    if not os.environ.get("PREFECT_API_URL"):
        print("PREFECT_API_URL is not set: runs go to a temporary Prefect server with no UI. "
              "Start `prefect server start` and export PREFECT_API_URL (see docs/operations.md).")
    serve_all(settings, intake_interval=args.intake_interval, reconcile_at=args.reconcile_at,
              collect_at=args.collect_at)
    return 0


def _time_of_day(text: str) -> str:
    try:
        cron_at(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """`creditflow serve [--intake-interval SECONDS] [--reconcile-at HH:MM] [--collect-at HH:MM]`;
    sets func(args, settings)."""
    parser = subparsers.add_parser(
        "serve", help="register the scheduled deployments with the Prefect API and run them")
    parser.add_argument("--intake-interval", type=float, default=60, metavar="SECONDS",
                        help="how often the drop zones are polled (default 60)")
    parser.add_argument("--reconcile-at", type=_time_of_day, default="02:00", metavar="HH:MM",
                        help=f"nightly reconciliation time, {BUSINESS_TIMEZONE} (default 02:00)")
    parser.add_argument("--collect-at", type=_time_of_day, default="09:00", metavar="HH:MM",
                        help=f"daily collections (reminders) time, {BUSINESS_TIMEZONE}; must be after "
                             "--reconcile-at (default 09:00)")
    parser.set_defaults(func=_cmd_serve)
    return parser
