"""Our CODA parser against pycoda (the parser Odoo's community uses) on the same generated file.

Each parser runs in its own subprocess so that peak RSS (`resource.getrusage`) is its own; only the
parse is timed (the file is read into memory first). pycoda is installed in benchmarks/.venv-pycoda,
never in the project venv: it ships a top-level package `coda` that would clash with febelfin-coda
(bank-statements.md 1.13). Ours reads the information records on a second thread (`coda.PARALLEL`),
so on a busy machine its figure suffers more than pycoda's: the load average is printed with them.

    python benchmarks/bench_coda.py [movements=500000] [repeat=3]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYCODA_VENV = HERE / ".venv-pycoda"
OUT = HERE / "out"

OURS = r"""
import json, resource, sys, time
from creditflow.parsers.coda import CodaParser
data = open(sys.argv[1], "rb").read()
best = None
batch = None
for _ in range(int(sys.argv[2])):
    batch = None  # the previous result is not part of this parse's memory
    start = time.perf_counter()
    batch = CodaParser().parse(data, source=sys.argv[1])
    elapsed = time.perf_counter() - start
    best = elapsed if best is None else min(best, elapsed)
print(json.dumps({"seconds": best, "movements": batch.movements.height, "statements": batch.statements.height,
                  "warnings": len(batch.warnings),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PYCODA = r"""
import json, resource, sys, time
from coda.parser import Parser
data = open(sys.argv[1], "rb").read()
best = None
statements = None
for _ in range(int(sys.argv[2])):
    statements = None  # the previous result is not part of this parse's memory
    start = time.perf_counter()
    statements = Parser().parse(data)
    elapsed = time.perf_counter() - start
    best = elapsed if best is None else min(best, elapsed)
print(json.dumps({"seconds": best, "movements": sum(len(s.movements) for s in statements),
                  "statements": len(statements),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def pycoda_python() -> Path:
    python = PYCODA_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PYCODA_VENV} with pycoda (first run only)")
        venv.create(PYCODA_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "pycoda"], check=True)
    return python


def run(python: str, script: str, path: Path, repeat: int) -> dict:
    done = subprocess.run([python, "-c", script, str(path), str(repeat)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    movements = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    sys.path.insert(0, str(HERE))
    from gen_coda import generate

    path = OUT / f"coda_{movements}.cod"
    if not path.exists():
        text, _, _ = generate(movements)
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("cp1252"))
    records = sum(1 for line in path.read_bytes().splitlines() if line.strip())
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path} ({size_mb:.1f} MB, {records:,} records)")

    load_before = os.getloadavg()
    ours = run(sys.executable, OURS, path, repeat)
    theirs = run(str(pycoda_python()), PYCODA, path, repeat)
    load_after = os.getloadavg()
    for label, r in (("creditflow (numpy/polars)", ours), ("pycoda 1.1 (pure Python)", theirs)):
        print(
            f"{label:28s} {r['seconds']:7.2f} s  {records / r['seconds']:>12,.0f} records/s  "
            f"{r['movements'] / r['seconds']:>10,.0f} movements/s  peak RSS {r['rss_mb']:7.0f} MB  "
            f"({r['movements']:,} movements, {r['statements']} statements)"
        )
    if ours["movements"] != theirs["movements"]:
        print(f"WARNING: movement counts differ ({ours['movements']} vs {theirs['movements']})")
    print(f"speed-up: {theirs['seconds'] / ours['seconds']:.1f}x in records/s (best of {repeat}); peak RSS "
          f"{ours['rss_mb'] / theirs['rss_mb']:.2f}x pycoda's; warnings from ours: {ours['warnings']}")
    print(f"load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, after: "
          f"{'/'.join(f'{x:.2f}' for x in load_after)} on {os.cpu_count()} cores (figures are only comparable "
          f"when both stay well under the core count)")


if __name__ == "__main__":
    main()
