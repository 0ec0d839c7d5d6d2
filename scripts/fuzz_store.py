"""Fuzz a real store: damage copies of it (random runs of bytes, truncations) and check that
each is refused with one clear line or reads back bit-identical.  Each batch of cases runs in a
subprocess, so a crash of the HDF5 library would be counted, not hidden.

    python scripts/fuzz_store.py STORE [--cases 2000] [--seed 0] [--batch 100]

Prints the counts: refused, read back identical, silently different (must be 0), other errors
or tracebacks (must be 0), crashed batches (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_batch(store: str, first: int, count: int, seed: int, workdir: str) -> dict:
    """One subprocess: cases first..first+count-1; returns its counts."""
    code = f"""
import json, sys, traceback
from pathlib import Path
import numpy as np
sys.path.insert(0, {str(HERE.parent / "tests")!r})
from test_store_integrity import damage, read_everything, same
from imitate.errors import StoreError
truth = read_everything({store!r})
data = bytearray(Path({store!r}).read_bytes())
counts = {{"refused": 0, "identical": 0, "different": 0, "other": 0, "examples": []}}
for case in range({first}, {first + count}):
    rng = np.random.default_rng([{seed}, case])
    path = Path({workdir!r}) / f"case{{case}}.h5"
    path.write_bytes(damage(data, rng))
    try:
        got = read_everything(path)
    except StoreError as exc:
        ok = str(exc).startswith(f"{{path}}: ") and "\\n" not in str(exc)
        counts["refused" if ok else "other"] += 1
    except Exception as exc:
        counts["other"] += 1
        counts["examples"].append(f"case {{case}}: {{type(exc).__name__}}: {{exc}}"[:300])
    else:
        key = "identical" if same(got, truth) else "different"
        counts[key] += 1
        if key == "different":
            counts["examples"].append(f"case {{case}}: read back different data")
    path.unlink()
print(json.dumps(counts))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    if done.returncode != 0:
        return {"crashed": 1, "examples": [f"batch {first}: exit {done.returncode}: {done.stderr[-300:]}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    total = {"refused": 0, "identical": 0, "different": 0, "other": 0, "crashed": 0, "examples": []}
    with tempfile.TemporaryDirectory() as workdir:
        for first in range(0, args.cases, args.batch):
            counts = run_batch(args.store, first, min(args.batch, args.cases - first), args.seed, workdir)
            for key, value in counts.items():
                total[key] = total[key] + value
            print(f"{first + args.batch:6d} cases: " + ", ".join(f"{k} {v}" for k, v in total.items()
                                                              if k != "examples"), flush=True)
    print(json.dumps({k: v for k, v in total.items() if k != "examples"}))
    for line in total["examples"][:20]:
        print(line)


if __name__ == "__main__":
    main()
