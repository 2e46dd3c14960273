"""`creditflow reconcile`: the night on given statement files, or (--dry-run) a preview of it.

The preview matches against the ledger's open invoices, or against an open-invoice CSV in the
canonical columns, and books nothing: finance sees what the night will do before it does it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register `reconcile` on the `creditflow` command's subparsers."""
    parser = subparsers.add_parser("reconcile", help="reconcile bank statements (CODA, CAMT.053) with invoices")
    parser.add_argument("statements", nargs="+", metavar="STATEMENT", help="CODA or CAMT.053 files")
    parser.add_argument("--dry-run", action="store_true", help="only show what would be matched; book nothing")
    parser.add_argument("--invoices", metavar="OPEN_INVOICES.csv",
                        help="(dry run) match against this CSV instead of the ledger")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_reconcile)
    return parser


def cmd_reconcile(args, settings) -> int:
    if args.dry_run:
        return main_dry_run(args.statements, settings=settings, invoices_csv=args.invoices, as_json=args.json)
    if args.invoices:
        print("creditflow reconcile: --invoices only goes with --dry-run")
        return 2
    from creditflow.pipeline.reconcile import run_reconciliation
    from creditflow.pipeline.runtime import open_runtime

    rt = open_runtime(settings)
    try:
        summary = run_reconciliation(rt, [(Path(p).name, Path(p).read_bytes()) for p in args.statements])
    finally:
        rt.close()
    print(summary.markdown())
    return 0


def main_dry_run(paths: list[str], *, settings, invoices_csv: str | None = None, as_json: bool = False) -> int:
    from creditflow.config import load_profiles
    from creditflow.pipeline import reconcile

    profiles = load_profiles(settings.profiles_dir)
    patterns = reconcile.number_patterns(profiles)
    owners = {p.iban.replace(" ", "").upper(): p.id for p in profiles.values()}
    if invoices_csv:
        invoices = reconcile.open_invoices_from_csv(Path(invoices_csv).read_bytes())
        owners = {}  # a CSV has no creditor: match across it
    else:
        from creditflow.ledger import db, payments

        engine = db.make_engine(settings.resolved_database_url)
        try:
            db.upgrade(engine)
            with db.session_factory(engine)() as session:
                invoices = payments.open_invoices_frame(session, include_settled=True)
        finally:
            engine.dispose()
    statements = [(Path(p).name, Path(p).read_bytes()) for p in paths]
    result = reconcile.preview(statements, invoices, patterns, creditor_by_iban=owners)
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        return 0
    for f in result["files"]:
        state = f"error: {f['error']}" if f["error"] else f"{f['statements']} statement(s), {f['movements']} movement(s)"
        print(f"{f['name']}: {state}")
    for row in result["movements"]:
        amount = _money(row["amount_cents"])
        stage = f"{row['stage']} {row['stage_name']}" if row["stage"] else "-"
        conf = f"{row['confidence']:.2f}" if row["confidence"] is not None else "-"
        print(f"{row['movement_key']}  {amount:>12}  {row['status']:<9} stage {stage:<26} conf {conf:<5}"
              f" invoice {row['invoice_number'] or '-'}\n    {row['reason'] or ''}")
    t = result["totals"]
    print(f"credits {_money(t['credits_cents'])} = matched {_money(t['matched_cents'])} ({t['matched']})"
          f" + unmatched {_money(t['unmatched_cents'])} ({t['unmatched']}); reversals {t['reversals']}")
    return 0


def _money(cents: int | None) -> str:
    from creditflow.reconciliation.reports import money

    return money(cents)
