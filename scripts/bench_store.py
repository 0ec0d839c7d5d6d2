"""Benchmark the HDF5 demonstration store: write and load 1M samples, and append latency.

Measures, in one run on the same disk:
- writing N samples (default 1M, obs_dim 179) as rounds of episodes, with the append latency
  of each round (the rollback journal makes it cost what the round writes, not the file size);
- loading the training arrays (obs and expert labels) into RAM with DemoStore.load, as a
  ratio to numpy.load of the same arrays from .npy files (both from a warm page cache);
- the latency of appending one DAgger-sized round (default 8 episodes x 300 steps) to the full
  store.

Run: python scripts/bench_store.py [--samples 1000000] [--dir /tmp] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from imitate.config import EnvConfig
from imitate.simulation import model_hash_of
from imitate.store import DemoStore, Episode


def episode(rng: np.random.Generator, length: int, source: str = "dagger") -> Episode:
    f32 = np.float32
    return Episode(
        obs=rng.standard_normal((length, 179), dtype=f32), expert_actions=rng.uniform(-1, 1, (length, 28)).astype(f32),
        actions=rng.uniform(-1, 1, (length, 28)).astype(f32), qpos=rng.standard_normal((length, 35)),
        qvel=rng.standard_normal((length, 34)), time_s=np.arange(length) / 30.0, phase=np.zeros(length, f32),
        reward=np.ones(length, f32), terminated=np.zeros(length, bool), truncated=np.zeros(length, bool),
        source=source, clip="walk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--episode-len", type=int, default=1000)
    parser.add_argument("--episodes-per-round", type=int, default=100)
    parser.add_argument("--dagger-round", type=int, nargs=2, default=[8, 300], metavar=("EPISODES", "STEPS"))
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    config = EnvConfig(clip="walk")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench.h5"
        store = DemoStore.create(path, config, model_hash=model_hash_of(config))
        rounds = max(1, args.samples // (args.episode_len * args.episodes_per_round))
        latencies = []
        t0 = time.perf_counter()
        for r in range(rounds):
            eps = [episode(rng, args.episode_len) for _ in range(args.episodes_per_round)]
            t = time.perf_counter()
            store.append_round(eps, round=r, env_config=config, model_hash=store.model_hash)
            latencies.append(time.perf_counter() - t)
        write_s = sum(latencies)
        samples = rounds * args.episodes_per_round * args.episode_len
        size_mb = path.stat().st_size / 1e6

        fields = ("obs", "expert_actions")
        store.load(fields, split=None)  # warm the page cache, as numpy's files will be
        t = time.perf_counter()
        data = store.load(fields, split=None)
        load_s = time.perf_counter() - t
        for name in fields:
            np.save(Path(tmp) / f"{name}.npy", data[name])
        for name in fields:
            np.load(Path(tmp) / f"{name}.npy")
        t = time.perf_counter()
        for name in fields:
            np.load(Path(tmp) / f"{name}.npy")
        npy_s = time.perf_counter() - t

        n_eps, n_steps = args.dagger_round
        eps = [episode(rng, n_steps) for _ in range(n_eps)]
        t = time.perf_counter()
        store.append_round(eps, round=rounds, env_config=config, model_hash=store.model_hash)
        dagger_s = time.perf_counter() - t
        total_s = time.perf_counter() - t0

    gb = sum(data[n].nbytes for n in fields) / 1e9
    out = {
        "samples": samples, "file_mb": round(size_mb, 1), "rounds": rounds,
        "write_samples_per_s": round(samples / write_s),
        "append_latency_s": {"first_round": round(latencies[0], 3), "last_round": round(latencies[-1], 3),
                             "median": round(float(np.median(latencies)), 3)},
        "load_s": round(load_s, 3), "load_gb_per_s": round(gb / load_s, 2), "numpy_load_s": round(npy_s, 3),
        "load_ratio_to_numpy": round(npy_s / load_s, 3),
        "dagger_round_append_s": round(dagger_s, 4), "dagger_round": {"episodes": n_eps, "steps": n_steps},
        "total_s": round(total_s, 1),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Demonstration store: {samples:,} samples, {size_mb:,.0f} MB file")
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_row("write (append rounds)", f"{out['write_samples_per_s']:,} samples/s")
    table.add_row("append latency of a round, first / median / last",
                  f"{latencies[0]:.2f} / {np.median(latencies):.2f} / {latencies[-1]:.2f} s "
                  f"({args.episodes_per_round * args.episode_len:,} samples)")
    table.add_row("load obs + labels into RAM", f"{load_s:.3f} s ({gb / load_s:.2f} GB/s)")
    table.add_row("numpy.load of the same arrays", f"{npy_s:.3f} s")
    table.add_row("load speed as a ratio to numpy.load", f"{npy_s / load_s:.2f}")
    table.add_row(f"append one DAgger round to the full store ({n_eps} x {n_steps})", f"{dagger_s * 1000:.0f} ms")
    Console().print(table)


if __name__ == "__main__":
    main()
