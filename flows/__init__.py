"""Prefect flows: orchestration only. Each task wraps a step of `creditflow.pipeline` and is coarse
(a whole file, a chunk of a thousand invoices), because a Prefect task run costs tens of
milliseconds and server work (docs/adr/0002-pinned-prefect.md)."""
