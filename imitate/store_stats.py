"""Inspecting a demonstration store: a summary for tables/JSON, and a full validation."""

from __future__ import annotations

import json

import numpy as np

from . import humanoid as hum
from .errors import StoreError
from .observation import OBS_DIM, OBS_GROUPS, OBS_NAMES
from .store import _DTYPES, _WIDTHS, AT_LIMIT, FORMAT, READABLE_VERSIONS, STAT_FIELDS, DemoStore, Episode, run_of


def _span(values) -> dict:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"mean": None, "min": None, "max": None}
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


def summarize(store: DemoStore) -> dict:
    """Everything `imitate dataset stats` shows, as plain JSON-able data."""
    attrs = store.attrs()
    env = json.loads(attrs["env_config"])
    index = store.episode_index()
    meta = {k: attrs[k] for k in ("format", "schema_version", "imitate_version", "created_utc", "model_hash",
                                  "valid_every")}
    meta.update(clip=env["clip"], action_space=env["action_space"], control_hz=env["control_hz"],
                physics_hz=env["physics_hz"], obs_dim=OBS_DIM, act_dim=hum.NU, episodes=len(index),
                steps=int(sum(e["length"] for e in index)), env_config=env)
    if "build_config" in attrs:
        meta["build_config"] = json.loads(attrs["build_config"])
    groups = {}
    for e in index:
        groups.setdefault((e["source"], e["round"], e["clip"], run_of(e)), []).append(e)
    by_round = [{"source": s, "round": r, "clip": c, "run": run, "episodes": len(es),
                 "steps": int(sum(e["length"] for e in es)),
                 "length": _span([e["length"] for e in es]), "return": _span([e["return"] for e in es])}
                for (s, r, c, run), es in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2]))]
    fields = {}
    obs = store.normalisation("obs")
    for group, sl in OBS_GROUPS.items():
        fields[f"obs/{group}"] = {
            "shape": [sl.stop - sl.start], "min": float(obs["min"][sl].min()), "max": float(obs["max"][sl].max()),
            "mean_abs_mean": float(np.abs(obs["mean"][sl]).mean()), "mean_std": float(obs["std"][sl].mean())}
    for name in ("expert_actions", "actions"):
        st = store.normalisation(name)
        count = max(st["count"], 1)
        fields[name] = {"shape": [hum.NU], "min": float(st["min"].min()), "max": float(st["max"].max()),
                        "mean_abs_mean": float(np.abs(st["mean"]).mean()), "mean_std": float(st["std"].mean()),
                        "at_limit_fraction": float(st["at_limit"].sum() / (count * hum.NU)),
                        "at_limit_worst": {"hinge": hum.HINGE_NAMES[int(np.argmax(st["at_limit"]))],
                                           "fraction": float(st["at_limit"].max() / count)}}
    splits = {s: {"episodes": sum(e["split"] == s for e in index),
                  "steps": int(sum(e["length"] for e in index if e["split"] == s))} for s in ("train", "valid")}
    return {"path": str(store.path), "metadata": meta, "rounds": by_round, "fields": fields, "splits": splits}


def validate(store: DemoStore) -> dict:
    """Check schema, shapes, dtypes, finiteness, splits and statistics against the data.

    Raises StoreError on the first problem (saying what and where); returns counts if all is well.
    """
    path = store.path

    def fail(where: str, message: str):
        raise StoreError(f"{path}: {where}: {message}")

    with store._read() as f:
        for key in ("format", "schema_version", "env_config", "model_hash", "obs_names", "act_names",
                    "valid_every", "next_episode_id", "rounds"):
            if key not in f.attrs:
                fail("root attributes", f"expected attribute {key!r}, found none")
        if f.attrs["format"] != FORMAT or int(f.attrs["schema_version"]) not in READABLE_VERSIONS:
            fail("root attributes", "format or schema version changed")
        if json.loads(f.attrs["obs_names"]) != list(OBS_NAMES):
            fail("root attributes", "obs_names differ from this imitate's observation layout")
        ids = sorted(int(k) for k in f["episodes"])
        following = int(f.attrs["next_episode_id"])  # ids are below it (a copy may leave gaps)
        if ids and (ids[0] < 0 or ids[-1] >= following):
            fail("episodes", f"expected ids 0..{following - 1}, found {ids[0]}..{ids[-1]}")
        train, valid = f["mask/train"][()].tolist(), f["mask/valid"][()].tolist()
        if sorted(train + valid) != ids:
            fail("mask", f"train ({len(train)}) and valid ({len(valid)}) must partition the {len(ids)} episodes")
        sums = {name: [] for name in STAT_FIELDS}
        rounds = set()
        index = f["index"][()]
        if [int(i) for i in index["id"]] != ids:
            fail("index", f"expected one row per episode in id order ({len(ids)}), found {len(index)} rows")
        checksummed = int(f.attrs["schema_version"]) >= 2
        for row, eid in zip(index, ids, strict=True):
            g = f[f"episodes/{eid:07d}"]
            where = f"episode {eid}"
            length = int(g.attrs.get("length", -1))
            rounds.add(int(g.attrs.get("round", -1)))
            for key in ("round", "length", "source", "clip", "checkpoint_id"):
                stored = row[key].decode() if isinstance(row[key], bytes) else row[key].item()
                if stored != (g.attrs.get(key).item() if hasattr(g.attrs.get(key), "item") else g.attrs.get(key)):
                    fail(where, f"attribute {key} {g.attrs.get(key)!r} differs from the index's {stored!r}")
            for name in Episode.ARRAYS:
                if name not in g:
                    fail(where, f"expected dataset {name!r}, found none")
                ds = g[name]
                shape = (length, _WIDTHS[name]) if name in _WIDTHS else (length,)
                if ds.shape != shape or ds.dtype != np.dtype(_DTYPES[name]):
                    fail(f"{where}/{name}", f"expected {shape} {np.dtype(_DTYPES[name])}, found {ds.shape} {ds.dtype}")
                if checksummed and not ds.fletcher32:
                    fail(f"{where}/{name}", "expected a fletcher32 checksum in a version-2 store, found none")
                data = ds[()]
                if data.dtype.kind == "f" and not np.isfinite(data).all():
                    row = int(np.argwhere(~np.isfinite(data))[0][0])
                    fail(f"{where}/{name}", f"expected finite values, found a non-finite value at step {row}")
                if name in sums:
                    sums[name].append(data.astype(np.float64))
            if not np.isclose(float(g.attrs["return"]), float(g["reward"][()].astype(np.float64).sum()), atol=1e-3):
                fail(where, f"attribute return {g.attrs['return']} differs from the sum of its rewards")
        if sorted(rounds) != json.loads(f.attrs["rounds"]):
            fail("root attributes", f"rounds {f.attrs['rounds']} differ from the episodes' rounds {sorted(rounds)}")
        for name, parts in sums.items():
            g = f[f"stats/{name}"]
            x = np.concatenate(parts) if parts else np.zeros((0, _WIDTHS[name]))
            count = int(g["count"][()])
            if count != len(x):
                fail(f"stats/{name}", f"count {count} differs from the {len(x)} rows stored")
            if len(x) == 0:
                continue
            mean = x.mean(0)
            m2 = ((x - mean) ** 2).sum(0)
            scale = np.abs(x).max(0) + 1e-12
            # (stored, expected, tolerance): merged sums drift by rounding only; min, max and
            # counts are exact copies of the data
            checks = {"mean": (mean, 1e-9 * scale), "m2": (m2, 1e-9 * (m2 + len(x) * scale**2)),
                      "min": (x.min(0), 0.0), "max": (x.max(0), 0.0)}
            if name != "obs":
                checks["at_limit"] = ((np.abs(x) >= AT_LIMIT).sum(0), 0.0)
            for key, (expected, tol) in checks.items():
                if np.any(np.abs(g[key][()] - expected) > tol):
                    worst = int(np.argmax(np.abs(g[key][()] - expected)))
                    fail(f"stats/{name}/{key}", f"stored {g[key][()][worst]} differs from the data's {expected[worst]} "
                                                f"at dimension {worst}")
    return {"episodes": len(ids), "steps": int(sum(len(p) for p in sums["obs"])), "checksums": checksummed}


