"""The steps every flow runs, as plain functions: claim, ingest, render, dispatch.

No Prefect here: `creditflow.flows` wraps these in coarse tasks, and tests call them directly.
Each step is safe to re-run: its idempotency comes from the ledger (files by sha256, invoices by
creditor + number, deliveries by idempotency key), never from Prefect's caching.
"""
