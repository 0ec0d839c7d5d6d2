"""The HDF5 demonstration store: episodes from mocap and DAgger rounds, appended safely.

Schema (version 2; datasets/README.md documents it for users):
- root attributes: ``format`` = "imitate.demo_store", ``schema_version``, ``imitate_version``,
  ``created_utc``, ``env_config`` (EnvConfig JSON), ``model_hash``, ``obs_names`` and
  ``act_names`` (JSON lists, one name per dimension), ``valid_every``, ``next_episode_id``,
  ``rounds`` (JSON list of the rounds appended), ``digest`` (below).
- ``episodes/NNNNNNN``: one group per episode with datasets ``obs`` (T, obs_dim) f4,
  ``expert_actions`` (T, act_dim) f4 (the labels), ``actions`` (T, act_dim) f4 (executed),
  ``qpos`` (T, nq) f8, ``qvel`` (T, nv) f8, ``time_s`` (T,) f8 (clip time), ``phase`` (T,) f4,
  ``reward`` (T,) f4, ``terminated`` and ``truncated`` (T,) bool; attributes ``source``
  ("mocap", "dagger", "rollout", "plan": states a search expert's plans reached from a DAgger
  round's visited states, ``dagger.collect``), ``round``, ``clip``, ``checkpoint_id``, ``beta``, ``seed``,
  ``length``, ``return``, ``labelled_by``.
- ``index``: one row per episode (id, round, length, return, beta, seed, source, clip,
  checkpoint_id, valid), the same facts as the groups' attributes in one compact table, so
  that selecting episodes costs one read rather than one per attribute.
- ``mask/train``, ``mask/valid``: episode ids (every ``valid_every``-th episode is valid).
- ``stats/<field>/{count, mean, m2, min, max, at_limit}`` for obs, expert_actions, actions:
  merged from each append's own sums (Chan et al.), never by re-reading the file.

Integrity (version 2): every chunked dataset carries HDF5's fletcher32 checksum (an episode's
array is one chunk, so one read still loads it whole), the file's own metadata is checksummed
by HDF5's latest format, and ``digest`` (SHA-256) covers what neither does: the root
attributes, the statistics, the index and the masks.  Every read verifies them, and damaged
data is refused with StoreError naming the file and what failed.  Version-1 stores (no
checksums) still open; ``DemoStore.upgrade`` rewrites them as version 2.

Safety: a file is created complete under a temporary name and renamed into place; an append
(one round, any number of episodes) runs as one transaction under a rollback journal
(imitate.journal) while holding an exclusive ``flock`` on the store file itself; readers hold
a shared one while they read (so no lock file is needed, and read-only media work), and any
reader or writer that finds a journal left by a killed writer rolls it back first.  So after a
crash, a full disk or a file-size limit at any instant the file holds exactly the completed
rounds.  Two writers take turns: the second waits for the first's append to finish.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import struct
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from . import humanoid as hum
from .atomic import replaced_on_success
from .config import EnvConfig
from .errors import StoreError
from .journal import JournaledFile, journal_path, recover
from .observation import OBS_NAMES

FORMAT = "imitate.demo_store"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: written before checksums (upgrade adds them)
SOURCES = ("mocap", "dagger", "rollout", "plan")
STAT_FIELDS = ("obs", "expert_actions", "actions")
ACT_NAMES = hum.HINGE_NAMES
AT_LIMIT = 0.999  # |action| at or above this counts as sitting at its limit
_RUN_LOCK_BYTE = 2**62  # the byte DemoStore.held_for_run locks (never data)


@dataclass(frozen=True)
class Episode:
    """One episode to append.  T steps; shapes as in the module docstring."""

    obs: np.ndarray
    expert_actions: np.ndarray
    actions: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    time_s: np.ndarray
    phase: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    source: str = "mocap"
    clip: str = ""
    checkpoint_id: str = ""
    beta: float = float("nan")
    seed: int = -1
    labelled_by: str = ""  # the labelling expert's provenance (kind, settings, hashes) as JSON

    ARRAYS = ("obs", "expert_actions", "actions", "qpos", "qvel", "time_s", "phase", "reward",
              "terminated", "truncated")

    def __len__(self) -> int:
        return len(self.obs)


INDEX_DTYPE = np.dtype([("id", "<i8"), ("round", "<i8"), ("length", "<i8"), ("return", "<f8"), ("beta", "<f8"),
                        ("seed", "<i8"), ("source", "S16"), ("clip", "S64"), ("checkpoint_id", "S64"), ("valid", "u1")])
_DTYPES = {"obs": np.float32, "expert_actions": np.float32, "actions": np.float32, "qpos": np.float64,
           "qvel": np.float64, "time_s": np.float64, "phase": np.float32, "reward": np.float32,
           "terminated": np.bool_, "truncated": np.bool_}
_WIDTHS = {"obs": len(OBS_NAMES), "expert_actions": hum.NU, "actions": hum.NU, "qpos": hum.NQ, "qvel": hum.NV}


def run_of(episode: dict) -> str:
    """The DAgger run that collected an episode (an episode_index row): the run id its
    checkpoint_id starts with ("RUN_ID:round_NNN.pt"); "" for mocap episodes and older runs."""
    head, sep, _ = episode["checkpoint_id"].partition(":")
    return head if sep and episode["source"] != "mocap" else ""


# what h5py and numpy raise on damaged bytes (HDF5's checksum failures are OSErrors)
_DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _disk_full(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextmanager
def _locked(path: Path, exclusive: bool):
    """Hold a flock on the store file itself, shared (readers) or exclusive (the writer); roll
    back a dead writer's journal first.  flock, not fcntl's record locks: those would be dropped
    when HDF5 closes its own descriptor of the same file."""
    if path.is_dir():
        raise StoreError(f"{path}: expected an HDF5 store file, found a directory")
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise StoreError(f"{path}: no such store (build one with `imitate dataset build`)") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the store ({_first_line(exc)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if journal_path(path).exists():  # a writer died mid-append: restore the last commit
            if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
                raise StoreError(f"{path}: a writer was stopped mid-append and left {journal_path(path).name}; "
                                 "this medium is read-only, so the store must be recovered by a writer first "
                                 "(open it once where it is writable, e.g. `imitate dataset validate`)")
            if not exclusive:
                fcntl.flock(fd, fcntl.LOCK_EX)
            recover(path)
            if not exclusive:
                fcntl.flock(fd, fcntl.LOCK_SH)
        if exclusive:  # lock files of imitate before 0.9 are not needed any more
            with suppress(OSError):
                Path(f"{path}.lock").unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def _digest(f: h5py.File) -> str:
    """SHA-256 of what fletcher32 and HDF5's metadata checksums leave uncovered: the root
    attributes (but this one), the statistics, the index and the masks."""
    h = hashlib.sha256()
    for key in sorted(k for k in f.attrs if k != "digest"):
        value = f.attrs[key]
        value = value.item() if isinstance(value, np.generic) else value
        h.update(f"{key}={json.dumps(value)}\n".encode())
    names = ["index", "mask/train", "mask/valid"]
    names += [f"stats/{n}/{k}" for n in STAT_FIELDS for k in sorted(f[f"stats/{n}"])]
    for name in names:
        h.update(name.encode())
        h.update(np.ascontiguousarray(f[name][()]).tobytes())
    return h.hexdigest()


def _validate_episode(ep: Episode, index: int) -> dict[str, np.ndarray]:
    """The episode's arrays cast to their dtypes, or StoreError saying what is wrong where."""
    where = f"episode {index} of the append"
    if ep.source not in SOURCES:
        raise StoreError(f"{where}: expected source in {SOURCES}, found {ep.source!r}")
    n = len(ep.obs)
    if n < 1:
        raise StoreError(f"{where}: expected at least 1 step, found 0")
    out = {}
    for name in Episode.ARRAYS:
        arr = np.asarray(getattr(ep, name))
        shape = (n, _WIDTHS[name]) if name in _WIDTHS else (n,)
        if arr.shape != shape:
            raise StoreError(f"{where}, field {name}: expected shape {shape}, found {arr.shape}")
        if arr.dtype.kind == "f" or name not in ("terminated", "truncated"):
            bad = ~np.isfinite(arr.astype(np.float64))
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise StoreError(f"{where}, field {name}: expected finite values, found {arr[row].ravel()[:4]}... "
                                 f"at step {row}")
        out[name] = arr.astype(_DTYPES[name])
    return out


def _merge_stats(group: h5py.Group, x: np.ndarray, is_action: bool) -> None:
    """Merge the count, mean, M2, min, max (and at-limit counts) of rows x into group's."""
    n_b = len(x)
    mean_b = x.mean(axis=0, dtype=np.float64)
    m2_b = ((x - mean_b) ** 2).sum(axis=0, dtype=np.float64)
    n_a = int(group["count"][()])
    if n_a == 0:
        mean, m2, lo, hi = mean_b, m2_b, x.min(axis=0), x.max(axis=0)
    else:
        mean_a, m2_a = group["mean"][()], group["m2"][()]
        delta = mean_b - mean_a
        n = n_a + n_b
        mean = mean_a + delta * n_b / n
        m2 = m2_a + m2_b + delta**2 * n_a * n_b / n
        lo, hi = np.minimum(group["min"][()], x.min(axis=0)), np.maximum(group["max"][()], x.max(axis=0))
    group["count"][()] = n_a + n_b
    group["mean"][...] = mean
    group["m2"][...] = m2
    group["min"][...] = lo
    group["max"][...] = hi
    if is_action:
        group["at_limit"][...] = group["at_limit"][()] + (np.abs(x) >= AT_LIMIT).sum(axis=0)


def _empty_stats(f: h5py.File) -> None:
    """stats/<field>/... of no rows yet."""
    for name in STAT_FIELDS:
        g = f.create_group(f"stats/{name}")
        width = _WIDTHS[name]
        g["count"] = np.int64(0)
        for key in ("mean", "m2", "min", "max"):
            g[key] = np.zeros(width)
        if name != "obs":
            g["at_limit"] = np.zeros(width, np.int64)


class DemoStore:
    """A demonstration store at ``path``.  Reads take a shared lock per call; appends an
    exclusive one.  Nothing is held open between calls."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such store (build one with `imitate dataset build`)")
        with self._read() as f:
            self.env_config = EnvConfig.from_json(f.attrs["env_config"])
            self.model_hash = str(f.attrs["model_hash"])
            self.schema_version = int(f.attrs["schema_version"])

    @property
    def checksummed(self) -> bool:
        """Whether the store carries checksums (schema 2); see DemoStore.upgrade."""
        return self.schema_version >= 2

    # ----- creating ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, env_config: EnvConfig, *, model_hash: str, valid_every: int = 10,
               overwrite: bool = False, extra_attrs: dict[str, str] | None = None) -> DemoStore:
        """Write an empty store (complete, then renamed into place) for episodes simulated
        with env_config on the model whose ``humanoid.model_hash`` is model_hash (the writer's
        word for it: the store checks names and hashes, it never compiles a model); extra_attrs
        are provenance strings kept as root attributes (e.g. the mocap build settings)."""
        path = cls.check_target(path, overwrite)
        if valid_every < 2:
            raise StoreError(f"valid_every must be >= 2; found {valid_every}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_on_success(path) as tmp, h5py.File(tmp, "w", libver="latest") as f:
            a = f.attrs
            a["format"], a["schema_version"], a["imitate_version"] = FORMAT, SCHEMA_VERSION, __version__
            a["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            a["env_config"], a["model_hash"] = env_config.to_json(), str(model_hash)
            a["obs_names"], a["act_names"] = json.dumps(list(OBS_NAMES)), json.dumps(list(ACT_NAMES))
            a["valid_every"], a["next_episode_id"], a["rounds"] = valid_every, 0, "[]"
            for key, value in (extra_attrs or {}).items():
                a[key] = value
            f.create_group("episodes")
            f.create_dataset("index", shape=(0,), maxshape=(None,), dtype=INDEX_DTYPE, chunks=(1024,), fletcher32=True)
            for split in ("train", "valid"):
                f.create_dataset(f"mask/{split}", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,),
                                 fletcher32=True)
            _empty_stats(f)
            f.attrs["digest"] = _digest(f)
        return cls(path)

    def copy(self, dst: str | os.PathLike, *, rounds: list[int] | None = None, sources: list[str] | None = None,
             runs: list[str] | None = None, overwrite: bool = False) -> DemoStore:
        """A new store at dst (complete, then renamed into place) holding this store's episodes
        that pass every filter given: rounds, sources, and runs (DAgger run ids, ``run_of``:
        their rounds and the mocap rounds, which every run trains on).  Episodes keep their ids,
        splits, rounds, attributes and labels; the statistics are merged again from them, round
        by round as the appends did (so a copy of everything has the same statistics); the copy
        carries checksums whatever this store's schema, and ``copied_from`` says what it holds."""
        dst = self.check_target(dst, overwrite)
        if dst.resolve() == self.path.resolve():
            raise StoreError(f"{dst}: expected another path than the store's own to copy it to")
        index = self.episode_index()
        found_runs = sorted({run_of(e) for e in index} - {""})
        for name, wanted, have in (("rounds", rounds, sorted({e["round"] for e in index})),
                                   ("sources", sources, sorted({e["source"] for e in index})),
                                   ("runs", runs, found_runs)):
            missing = sorted(set(wanted or ()) - set(have))
            if missing:
                raise StoreError(f"{self.path}: no {name} {missing} in this store; it has {have}")
        keep = [e for e in index if (rounds is None or e["round"] in rounds)
                and (sources is None or e["source"] in sources)
                and (runs is None or e["source"] == "mocap" or run_of(e) in runs)]
        if not keep:
            raise StoreError(f"{self.path}: no episode is in rounds {rounds}, sources {sources} and runs {runs} "
                             "at once")
        ids = np.array([e["id"] for e in keep])
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            with self._read() as src, replaced_on_success(dst) as tmp, h5py.File(tmp, "w", libver="latest") as f:
                self._copy_into(src, f, keep, ids, rounds, sources, runs)
        except StoreError:
            raise
        except _DAMAGE as exc:  # writing the copy: the source is only read (its damage is a StoreError above)
            raise StoreError(f"{dst}: cannot write the copy ({_first_line(exc)}); {self.path} is unchanged") from None
        return DemoStore(dst)

    def _copy_into(self, src: h5py.File, f: h5py.File, keep: list[dict], ids: np.ndarray, rounds, sources,
                   runs) -> None:
        """DemoStore.copy's writing: the kept episodes of src (open, verified) into the new file f;
        what fails reading src is its damage (StoreError), what fails writing f is copy's to report."""

        def read(obj, where: str):
            try:
                return obj[()]
            except _DAMAGE as exc:
                raise StoreError(f"{self.path}: cannot copy a damaged store: {where}: {_first_line(exc)}") from None

        for key, value in src.attrs.items():
            f.attrs[key] = value
        f.attrs["schema_version"], f.attrs["imitate_version"] = SCHEMA_VERSION, __version__
        f.attrs["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        f.attrs["copied_from"] = json.dumps({"path": str(self.path), "created_utc": str(src.attrs["created_utc"]),
                                             "rounds": rounds, "sources": sources, "runs": runs})
        f.attrs["rounds"] = json.dumps(sorted({e["round"] for e in keep}))
        rows = read(src["index"], "index")
        f.create_dataset("index", data=rows[np.isin(rows["id"], ids)], maxshape=(None,), chunks=(1024,),
                         fletcher32=True)
        for split in ("train", "valid"):
            mask = read(src[f"mask/{split}"], f"mask/{split}")
            f.create_dataset(f"mask/{split}", data=mask[np.isin(mask, ids)], maxshape=(None,), chunks=(4096,),
                             fletcher32=True)
        _empty_stats(f)
        f.create_group("episodes")
        by_round: dict[int, list[int]] = {}
        for e in keep:
            by_round.setdefault(e["round"], []).append(e["id"])
        for group_ids in by_round.values():  # one merge per round, as its append made
            merged = {name: [] for name in STAT_FIELDS}
            for eid in group_ids:
                source, g = src[f"episodes/{eid:07d}"], f.create_group(f"episodes/{eid:07d}")
                for key, value in source.attrs.items():
                    g.attrs[key] = value
                for name, ds in source.items():
                    data = read(ds, f"episode {eid}, dataset {name}")
                    g.create_dataset(name, data=data, chunks=data.shape, fletcher32=True)
                    if name in merged:
                        merged[name].append(data)
            for name, parts in merged.items():
                _merge_stats(f[f"stats/{name}"], np.concatenate(parts), name != "obs")
        f.attrs["digest"] = _digest(f)

    @staticmethod
    def check_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
        """path as a Path if a new store may be written there, else StoreError: check it before
        any long work that ends in writing one."""
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"{path}: expected a store file to write, found a directory")
        if path.exists() and not overwrite:
            raise StoreError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")
        return path

    # ----- opening -------------------------------------------------------------------------
    @contextmanager
    def _read(self):
        """The open file (read-only) under a shared lock, its identity and digest verified;
        whatever h5py raises on damaged bytes inside becomes one StoreError line."""
        with _locked(self.path, exclusive=False):
            try:
                f = h5py.File(self.path, "r", locking=False)
            except _DAMAGE as exc:
                raise StoreError(f"{self.path}: not an HDF5 file imitate can read ({_first_line(exc)})") from None
            try:
                with f:
                    self._check_identity(f)
                    yield f
            except StoreError:
                raise
            except _DAMAGE as exc:
                raise StoreError(f"{self.path}: damaged store: {_first_line(exc)}") from None

    def _check_identity(self, f: h5py.File) -> None:
        """Refuse a foreign file, another schema, missing members or a digest that does not match."""
        fmt = f.attrs.get("format")
        if fmt != FORMAT:
            raise StoreError(f"{self.path}: expected an imitate demonstration store (format {FORMAT!r}), "
                             f"found format {fmt!r}")
        version = int(f.attrs.get("schema_version", -1))
        if version not in READABLE_VERSIONS:
            raise StoreError(f"{self.path}: expected schema version {SCHEMA_VERSION}, found {version}")
        missing = [name for name in ("episodes", "index", "mask/train", "mask/valid", "stats") if name not in f]
        if missing:
            raise StoreError(f"{self.path}: expected the members of a version-{version} store; "
                             f"{missing} missing")
        if version >= 2 and f.attrs.get("digest") != _digest(f):
            raise StoreError(f"{self.path}: damaged store: its root attributes, statistics, index or masks do not "
                             "match their digest")

    # ----- appending -----------------------------------------------------------------------
    def append_round(self, episodes: list[Episode], *, round: int, env_config: EnvConfig,
                     model_hash: str) -> list[int]:
        """Append episodes as one round, all or nothing; return their episode ids.

        Refused with StoreError, nothing written, if env_config or model_hash (that of the
        model the episodes were simulated on, as in create) differ from the store's, or any
        episode is malformed (shape, NaN, source)."""
        if env_config.to_json() != self.env_config.to_json():
            raise StoreError(f"{self.path}: env configuration differs from the store's:\n  store:  "
                             f"{self.env_config.to_json()}\n  append: {env_config.to_json()}")
        if model_hash != self.model_hash:
            raise StoreError(f"{self.path}: the episodes' humanoid model hash {model_hash} differs from the "
                             f"store's {self.model_hash} (the model changed since the store was built)")
        if not episodes:
            raise StoreError(f"{self.path}: expected at least one episode to append, found none")
        arrays = [_validate_episode(ep, i) for i, ep in enumerate(episodes)]
        with _locked(self.path, exclusive=True):
            jf = None
            try:
                jf = JournaledFile(self.path)
                # libver: new groups get HDF5's checksummed object headers too
                with h5py.File(jf, "r+", libver="latest") as f:
                    self._check_identity(f)
                    ids = self._write_round(f, episodes, arrays, round)
                if jf.error is not None:  # a write failed (the journal kept the rest in memory)
                    raise jf.error
            except BaseException as exc:
                if jf is not None:
                    jf.close()
                recover(self.path)
                cause = jf.error if jf is not None and jf.error is not None else exc
                if _disk_full(cause):
                    raise StoreError(f"{self.path}: no space left to append round {round} "
                                     f"({os.strerror(cause.errno)}); rolled back: the store holds its earlier rounds, "
                                     "unchanged") from None
                if isinstance(exc, _DAMAGE) and not isinstance(exc, StoreError):
                    raise StoreError(f"{self.path}: appending round {round} failed ({_first_line(cause)}); "
                                     "rolled back: the store holds its earlier rounds, unchanged") from None
                raise
            jf.commit()
        return ids

    def _write_round(self, f: h5py.File, episodes, arrays, round: int) -> list[int]:
        first = int(f.attrs["next_episode_id"])
        valid_every = int(f.attrs["valid_every"])
        ids, rows, splits = [], [], {"train": [], "valid": []}
        for k, (ep, data) in enumerate(zip(episodes, arrays, strict=True)):
            eid = first + k
            g = f.create_group(f"episodes/{eid:07d}")
            checked = self.checksummed
            for name, arr in data.items():  # one chunk each: one read loads it whole
                g.create_dataset(name, data=arr, chunks=arr.shape if checked else None, fletcher32=checked)
            a = g.attrs
            a["source"], a["round"], a["clip"], a["checkpoint_id"] = ep.source, round, ep.clip, ep.checkpoint_id
            a["beta"], a["seed"], a["length"] = float(ep.beta), int(ep.seed), len(ep)
            if ep.labelled_by:
                a["labelled_by"] = ep.labelled_by
            a["return"] = float(data["reward"].astype(np.float64).sum())
            splits["valid" if eid % valid_every == valid_every - 1 else "train"].append(eid)
            ids.append(eid)
            rows.append((eid, round, len(ep), a["return"], a["beta"], a["seed"], ep.source.encode(),
                         ep.clip.encode(), ep.checkpoint_id.encode(), eid % valid_every == valid_every - 1))
        index = f["index"]
        index.resize((len(index) + len(rows),))
        index[-len(rows):] = np.array(rows, dtype=INDEX_DTYPE)
        for split, new in splits.items():
            ds = f[f"mask/{split}"]
            ds.resize((len(ds) + len(new),))
            if new:
                ds[-len(new):] = new
        for name in STAT_FIELDS:
            _merge_stats(f[f"stats/{name}"], np.concatenate([d[name] for d in arrays]), name != "obs")
        f.attrs["next_episode_id"] = first + len(episodes)
        rounds = json.loads(f.attrs["rounds"])
        f.attrs["rounds"] = json.dumps(sorted(set(rounds) | {round}))
        if self.checksummed:
            f.attrs["digest"] = _digest(f)
        return ids

    # ----- reading -------------------------------------------------------------------------
    def episode_index(self) -> list[dict]:
        """One dict per episode: id, split, round, length, return, beta, seed, source, clip,
        checkpoint_id (from the compact index: one read)."""
        with self._read() as f:
            rows = f["index"][()]
        out = []
        for row in rows:
            e = {name: row[name].item() for name in INDEX_DTYPE.names}
            for key in ("source", "clip", "checkpoint_id"):
                e[key] = e[key].decode()
            e["split"] = "valid" if e.pop("valid") else "train"
            out.append(e)
        return out

    def load(self, fields: tuple[str, ...] = ("obs", "expert_actions"), *, split: str | None = "train",
             rounds: list[int] | None = None, sources: list[str] | None = None, clips: list[str] | None = None,
             last_rounds: int | None = None) -> dict[str, np.ndarray]:
        """Concatenate the chosen episodes' fields into RAM, one contiguous read per dataset.

        Filters: split ("train", "valid" or None for both), rounds, sources, clips, and
        last_rounds (keep the mocap round plus only the last M other rounds)."""
        for name in fields:
            if name not in Episode.ARRAYS:
                raise StoreError(f"unknown field {name!r}; expected one of {Episode.ARRAYS}")
        chosen, lengths = self._select(split, rounds, sources, clips, last_rounds)
        with self._read() as f:
            out = {}
            total = int(sum(lengths))
            for name in fields:
                width = (_WIDTHS[name],) if name in _WIDTHS else ()
                buf = np.empty((total, *width), dtype=_DTYPES[name])
                pos = 0
                for e, n in zip(chosen, lengths, strict=True):
                    # h5py's low-level read straight into the slice: the high-level selection
                    # machinery costs more than the copy for episode-sized reads
                    try:
                        ds = h5py.h5d.open(f.id, f"episodes/{e:07d}/{name}".encode())
                        if ds.shape != buf[pos:pos + n].shape:
                            raise StoreError(f"{self.path}: damaged store: episode {e}, dataset {name}: expected "
                                             f"shape {buf[pos:pos + n].shape}, found {ds.shape}")
                        ds.read(h5py.h5s.ALL, h5py.h5s.ALL, buf[pos:pos + n])
                    except StoreError:
                        raise
                    except _DAMAGE as exc:
                        raise StoreError(f"{self.path}: damaged store: episode {e}, dataset {name}: "
                                         f"{_first_line(exc)}") from None
                    pos += n
                out[name] = buf
        return out

    def _select(self, split, rounds, sources, clips, last_rounds) -> tuple[list[int], list[int]]:
        """Ids and lengths of the episodes that pass the filters."""
        index = self.episode_index()
        keep_rounds = None
        if last_rounds is not None:  # the last of the rounds the other filters let through
            others = sorted({e["round"] for e in index if e["source"] != "mocap"
                             and (rounds is None or e["round"] in rounds)})
            keep_rounds = set(others[-last_rounds:]) if last_rounds > 0 else set()
        chosen = []
        for e in index:
            if split is not None and e["split"] != split:
                continue
            if rounds is not None and e["round"] not in rounds:
                continue
            if sources is not None and e["source"] not in sources:
                continue
            if clips is not None and e["clip"] not in clips:
                continue
            if keep_rounds is not None and e["source"] != "mocap" and e["round"] not in keep_rounds:
                continue
            chosen.append((e["id"], e["length"]))
        return [c[0] for c in chosen], [c[1] for c in chosen]

    def normalisation(self, name: str = "obs") -> dict[str, np.ndarray]:
        """count, mean, var, std, min, max (and at_limit for actions) of a field, from the stats."""
        with self._read() as f:
            g = f[f"stats/{name}"]
            count = int(g["count"][()])
            out = {k: g[k][()] for k in g if k != "count"}
        out["count"] = count
        out["var"] = out.pop("m2") / max(count, 1)
        out["std"] = np.sqrt(out["var"])
        return out

    def attrs(self) -> dict:
        with self._read() as f:
            return _plain_attrs(f.attrs)

    def episode_attrs(self, episode_id: int) -> dict:
        """One episode's attributes (source, round, labelled_by, ...: the module docstring)."""
        with self._read() as f:
            return _plain_attrs(f[f"episodes/{episode_id:07d}"].attrs)

    @contextmanager
    def held_for_run(self, what: str = "a DAgger run"):
        """Hold the store for one run that appends round after round (a DAgger run): a second
        run on the same store, in any process, is refused with StoreError while this one holds
        it, instead of interleaving its rounds with this one's.  An open-file-description lock on
        one byte far past the data: independent of the readers' and writers' flock, and, unlike
        POSIX record locks, not dropped when HDF5 closes its own descriptor of the file."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the store for writing ({_first_line(exc)})") from None
        try:
            request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _RUN_LOCK_BYTE, 1, 0)
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise StoreError(f"{self.path}: another run is appending to this store; wait for it to end, "
                                     f"or give {what} a copy of its own") from None
                raise
            yield self
        finally:
            os.close(fd)  # releases the lock

    def upgrade(self) -> bool:
        """Rewrite a version-1 store as version 2 (with checksums), complete under a temporary
        name and then renamed into place; False if it has them already."""
        if self.checksummed:
            return False
        with _locked(self.path, exclusive=True), h5py.File(self.path, "r", locking=False) as src, \
                replaced_on_success(self.path) as tmp, h5py.File(tmp, "w", libver="latest") as dst:
            try:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                dst.attrs["schema_version"] = SCHEMA_VERSION
                for name in ("index", "mask/train", "mask/valid"):
                    data = src[name][()]
                    dst.create_dataset(name, data=data, maxshape=(None,), chunks=src[name].chunks, fletcher32=True)
                src.copy(src["stats"], dst, "stats")
                dst.create_group("episodes")
                for eid, group in src["episodes"].items():
                    g = dst.create_group(f"episodes/{eid}")
                    for key, value in group.attrs.items():
                        g.attrs[key] = value
                    for name, ds in group.items():
                        data = ds[()]
                        g.create_dataset(name, data=data, chunks=data.shape, fletcher32=True)
                dst.attrs["digest"] = _digest(dst)
            except _DAMAGE as exc:
                raise StoreError(f"{self.path}: cannot upgrade a damaged store ({_first_line(exc)})") from None
        self.schema_version = SCHEMA_VERSION
        return True


def iterate_batches(data: dict[str, np.ndarray], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                    drop_last: bool = False):
    """Yield dicts of torch tensors (batch_size rows each) from arrays loaded into RAM, e.g.
    ``for batch in iterate_batches(store.load(), 256): loss(batch["obs"], batch["expert_actions"])``.
    Tensors share memory with the arrays' shuffled copies; one permutation per call."""
    import torch

    n = len(next(iter(data.values())))
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
    stop = n - batch_size + 1 if drop_last else n
    for start in range(0, max(stop, 0), batch_size):
        idx = torch.from_numpy(order[start:start + batch_size])
        yield {k: t[idx] for k, t in tensors.items()}


def _plain_attrs(attrs) -> dict:
    """HDF5 attributes as Python values (numpy scalars unwrapped)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
