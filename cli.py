"""The `creditflow` command.

    creditflow demo            copy the sample billing files into the inbox, then run the intake
    creditflow run             take every new file through intake, render and dispatch (one run)
    creditflow invoice NUMBER  an invoice's state, reference, PDF, deliveries and history
    creditflow profiles        check every creditor profile and list them
    creditflow parse FILE...   what a billing or bank-statement file holds (--json for scripts)
    creditflow reconcile ...   reconcile bank statements, or preview with --dry-run
    creditflow serve           scheduled deployments: intake, nightly reconciliation, collections
    creditflow feedback FILE   apply provider delivery events (bounces, delivery reports)
    creditflow hold INVOICE    stop reminders for an invoice (--release to lift the hold)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def _prefect_env(home: Path) -> None:
    """Keep Prefect's ephemeral database inside our data folder and its telemetry off (offline)."""
    os.environ.setdefault("PREFECT_HOME", str((home / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server creates and migrates its database on a first run: 17 s on an idle
    # 2-core machine, more on a busy one, against Prefect's default limit of 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def cmd_run(args, settings) -> int:
    from creditflow.flows.intake import billing_intake

    summary = billing_intake()
    print()
    print(summary.one_line())
    for f in summary.files:
        print(f"  {f.creditor_id}/{f.name}: {f.state}, {f.accepted} accepted, {f.rejected} rejected"
              + (f"\n    error report: {f.error_report}" if f.error_report else "")
              + (f"\n    reason: {f.reason}" if f.reason and f.state != "processed" else ""))
    print(f"PDFs:     {settings.resolved_documents_dir}")
    print(f"Messages: {settings.resolved_outbox_dir}")
    return 0


def cmd_demo(args, settings) -> int:
    from creditflow.config import load_profiles

    profiles = load_profiles(settings.profiles_dir)
    samples = Path(args.samples)
    copied = 0
    for creditor_id in profiles:
        inbox = settings.resolved_dropzone_dir / creditor_id / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        for sample in sorted((samples / creditor_id).glob("*")):
            if sample.is_file() and sample.suffix.lower() in {".csv", ".xml", ".zip"}:
                part = inbox / (sample.name + ".part")  # the upload convention: invisible until renamed
                shutil.copyfile(sample, part)
                os.replace(part, inbox / sample.name)
                copied += 1
    print(f"Dropped {copied} sample file(s) into {settings.resolved_dropzone_dir}/<creditor>/inbox")
    return cmd_run(args, settings)


def cmd_invoice(args, settings) -> int:
    from creditflow.ledger import db
    from creditflow.ledger.invoices import find_invoices
    from creditflow.ledger.outbox import deliveries_for_invoice
    from creditflow.renderers.references import format_reference

    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    with db.session_factory(engine)() as session:
        found = find_invoices(session, args.number, creditor_id=args.creditor)
        if not found:
            print(f"no invoice {args.number!r}" + (f" for creditor {args.creditor}" if args.creditor else ""))
            return 1
        for inv in found:
            print(f"{inv.creditor_id} / {inv.invoice_number}: {inv.state}")
            print(f"  debtor     {inv.debtor_name}")
            print(f"  amount     {inv.currency} {_money(inv.amount_cents)} (open {_money(inv.open_cents)})")
            print(f"  dates      issued {inv.issue_date}, due {inv.due_date}")
            ref = format_reference(inv.structured_reference, inv.reference_kind) if inv.structured_reference else "-"
            print(f"  reference  {ref}")
            print(f"  PDF        {inv.pdf_path or '(not rendered yet)'}")
            print(f"  link       {inv.payment_link or '-'}")
            for d in deliveries_for_invoice(session, inv.id):
                print(f"  delivery   {d.channel:<6} {d.purpose:<8} {d.state:<16} attempt {d.attempt}"
                      + (f"  {d.provider_id}" if d.provider_id else "") + (f"  {d.error}" if d.error else ""))
    return 0


def _money(cents: int) -> str:
    sign, cents = ("-" if cents < 0 else ""), abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def cmd_profiles(args, settings) -> int:
    from creditflow.config import load_profiles

    for profile in load_profiles(settings.profiles_dir).values():
        print(f"{profile.id}: {profile.legal_name} ({profile.vat}), IBAN {profile.iban}, "
              f"channels {' > '.join(profile.channels)}")
    return 0


def cmd_parse(args, settings) -> int:
    import json

    from creditflow.parsers.inspect import inspect_file, inspect_ubl_documents, render_text

    csv_parser = None
    if args.creditor:
        from creditflow.config import load_profiles
        from creditflow.parsers.csv_invoices import CsvInvoiceParser

        profiles = load_profiles(settings.profiles_dir)
        if args.creditor not in profiles:
            print(f"creditflow: no creditor profile {args.creditor!r} in {settings.profiles_dir}", file=sys.stderr)
            return 2
        csv_parser = CsvInvoiceParser(profiles[args.creditor].csv)
    summaries = []
    for path in args.files:
        if Path(path).is_dir():  # a folder of e-invoices is one batch, as a ZIP of them is
            xml = sorted(f for f in Path(path).iterdir() if f.is_file() and f.suffix.lower() == ".xml")
            summaries.append(inspect_ubl_documents(path, [(f.name, f.read_bytes()) for f in xml]))
            continue
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            summaries.append({"file": path, "size": 0, "format": None,
                              "error": {"code": "unreadable", "location": None, "field": None, "message": str(exc)}})
            continue
        summaries.append(inspect_file(Path(path).name, data, csv_parser))
    if args.json:
        print(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(render_text(s) for s in summaries))
    return 1 if any("error" in s for s in summaries) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="creditflow", description="Billing files in, payable invoices out.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="drop the sample files into the inbox and run the intake once")
    demo.add_argument("--samples", default="sample_files", help="folder with <creditor-id>/ sample files")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("run", help="run the billing intake once (ephemeral Prefect)").set_defaults(func=cmd_run)
    inv = sub.add_parser("invoice", help="show an invoice's state, deliveries and history")
    inv.add_argument("number")
    inv.add_argument("--creditor")
    inv.set_defaults(func=cmd_invoice)
    sub.add_parser("profiles", help="validate and list creditor profiles").set_defaults(func=cmd_profiles)
    parse = sub.add_parser("parse", help="say what a billing or bank-statement file holds")
    parse.add_argument("files", nargs="+", metavar="FILE",
                       help="a billing or bank file; a folder is read as one batch of UBL documents")
    parse.add_argument("--creditor", help="read CSV files with this creditor's column mapping")
    parse.add_argument("--json", action="store_true", help="print JSON for scripts")
    parse.set_defaults(func=cmd_parse)
    from creditflow.pipeline.reconcile_cli import add_cli as add_reconcile

    add_reconcile(sub)
    from creditflow.flows.serve import add_cli as add_serve

    add_serve(sub)
    from creditflow.pipeline.feedback import add_cli as add_feedback

    add_feedback(sub)
    from creditflow.pipeline.collections import add_cli as add_hold

    add_hold(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from creditflow.config import ConfigError, Settings

    args = build_parser().parse_args(argv)
    settings = Settings()
    _prefect_env(settings.home)
    try:
        return args.func(args, settings)
    except ConfigError as exc:
        print(f"creditflow: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
