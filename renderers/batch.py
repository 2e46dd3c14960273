"""Render many invoices to one PDF file each, on every core when the batch is large.

A page costs a few milliseconds, so small batches stay in-process (starting workers costs more than
it saves); from ~200 invoices a process pool takes chunks of documents so both cores work and the
per-task overhead is paid per chunk, not per invoice. The pool uses the "forkserver" start method
where available (a fork of a clean server process: safe when the caller runs threads, as Prefect
does, and cheaper than "spawn"); everything sent to workers is a picklable top-level function and
frozen dataclasses, so "spawn" works too.

Each file is written to a temporary name in the target folder and moved into place with
os.replace, so a crash never leaves a half-written PDF under the final name. File names come from
the sanitised invoice number plus the document id, never from raw input.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path

from creditflow.renderers.document import InvoiceDocument, safe_name
from creditflow.renderers.pdf import render_invoice_pdf

PARALLEL_THRESHOLD = 200
"""Below this many invoices the pool's start-up costs more than the second core gives."""

CHUNKS_PER_WORKER = 8
"""Enough chunks to even out uneven workers, few enough that task overhead stays negligible."""


def pdf_path(out_dir: Path, doc: InvoiceDocument) -> Path:
    return out_dir / f"{safe_name(doc.invoice_number)}-{safe_name(doc.document_id, 40)}.pdf"


def render_batch(docs: Sequence[InvoiceDocument], out_dir: Path, *, workers: int = 0) -> list[Path]:
    """Write one PDF per document; return their paths in input order.

    `workers`: 0 = automatic (all cores for batches of PARALLEL_THRESHOLD or more, else in-process);
    1 = in-process; n > 1 = a pool of n processes whatever the batch size.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = list(docs)
    if not docs:
        return []
    if workers < 0:
        raise ValueError("workers must be >= 0")
    if workers == 0:
        workers = (os.cpu_count() or 1) if len(docs) >= PARALLEL_THRESHOLD else 1
    workers = min(workers, len(docs))
    if workers <= 1:
        return _render_chunk((docs, str(out_dir)))
    chunk_size = max(1, -(-len(docs) // (workers * CHUNKS_PER_WORKER)))
    chunks = [(docs[i : i + chunk_size], str(out_dir)) for i in range(0, len(docs), chunk_size)]
    with _context().Pool(processes=workers) as pool:
        results = pool.map(_render_chunk, chunks, chunksize=1)
    return [path for chunk in results for path in chunk]


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _render_chunk(task: tuple[list[InvoiceDocument], str]) -> list[Path]:
    docs, out_dir = task
    folder = Path(out_dir)
    paths = []
    for doc in docs:
        path = pdf_path(folder, doc)
        write_atomic(path, render_invoice_pdf(doc))
        paths.append(path)
    return paths


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["creditflow.renderers.batch"])
        return context
    return multiprocessing.get_context("spawn")
