"""The HDF5 demonstration store: round trips, statistics, refusals, crashes and concurrency."""

import json
import os
import signal
import time

import h5py
import numpy as np
import pytest

from imitate.config import EnvConfig
from imitate.errors import StoreError
from imitate.journal import journal_path
from imitate.store import DemoStore, Episode

CONFIG = EnvConfig(clip="walk")
MODEL = "0123456789abcdef"  # a model hash: the store takes it as the writer's word, an opaque name


def make_episode(seed: int, length: int = 40, source: str = "dagger") -> Episode:
    """Deterministic content from the seed, so a checker can regenerate it."""
    rng = np.random.default_rng(seed)
    return Episode(
        obs=rng.normal(size=(length, 179)).astype(np.float32),
        expert_actions=rng.uniform(-1, 1, (length, 28)).astype(np.float32),
        actions=rng.uniform(-1.2, 1.2, (length, 28)).clip(-1, 1).astype(np.float32),
        qpos=rng.normal(size=(length, 35)), qvel=rng.normal(size=(length, 34)),
        time_s=np.arange(length) / 30.0, phase=rng.uniform(0, 1, length).astype(np.float32),
        reward=rng.uniform(0, 1, length).astype(np.float32),
        terminated=np.arange(length) == length - 1, truncated=np.zeros(length, bool),
        source=source, clip="walk", checkpoint_id=f"ckpt{seed}", beta=0.5, seed=seed,
    )


@pytest.fixture
def store(tmp_path):
    return DemoStore.create(tmp_path / "walk.h5", CONFIG, model_hash=MODEL)


def test_round_trip_of_every_field(store):
    eps = [make_episode(1, 30, "mocap"), make_episode(2, 45)]
    ids = store.append_round(eps[:1], round=0, env_config=CONFIG, model_hash=MODEL)
    ids += store.append_round(eps[1:], round=1, env_config=CONFIG, model_hash=MODEL)
    assert ids == [0, 1]
    with h5py.File(store.path, "r") as f:  # read back with plain h5py, not the store's reader
        for eid, ep in zip(ids, eps, strict=True):
            g = f[f"episodes/{eid:07d}"]
            for name in Episode.ARRAYS:
                np.testing.assert_array_equal(g[name][()], np.asarray(getattr(ep, name)))
            assert g.attrs["source"] == ep.source and g.attrs["clip"] == "walk"
            assert g.attrs["checkpoint_id"] == ep.checkpoint_id and g.attrs["seed"] == ep.seed
            assert g.attrs["beta"] == 0.5 and g.attrs["length"] == len(ep)
            assert g.attrs["return"] == pytest.approx(float(np.sum(ep.reward, dtype=np.float64)))
        assert json.loads(f.attrs["rounds"]) == [0, 1]
        assert EnvConfig.from_json(f.attrs["env_config"]) == CONFIG
        assert len(json.loads(f.attrs["obs_names"])) == 179 and len(json.loads(f.attrs["act_names"])) == 28
    both = store.load(Episode.ARRAYS, split=None)
    for name in Episode.ARRAYS:
        np.testing.assert_array_equal(both[name], np.concatenate([getattr(e, name) for e in eps]))


def test_statistics_after_many_appends_equal_all_at_once(store):
    eps = [make_episode(s, 10 + 7 * s) for s in range(25)]
    for r in range(5):
        store.append_round(eps[5 * r:5 * r + 5], round=r, env_config=CONFIG, model_hash=MODEL)
    for name in ("obs", "expert_actions", "actions"):
        x = np.concatenate([getattr(e, name) for e in eps]).astype(np.float64)
        st = store.normalisation(name)
        assert st["count"] == len(x)
        np.testing.assert_allclose(st["mean"], x.mean(0), atol=1e-9)
        np.testing.assert_allclose(st["var"], x.var(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(st["min"], x.min(0))
        np.testing.assert_array_equal(st["max"], x.max(0))
        if name != "obs":
            np.testing.assert_array_equal(st["at_limit"], (np.abs(x) >= 0.999).sum(0))


def test_splits_and_filters(store):
    store.append_round([make_episode(s, source="mocap") for s in range(10)], round=0,
                       env_config=CONFIG, model_hash=MODEL)
    for r in (1, 2, 3):
        store.append_round([make_episode(10 * r + s) for s in range(4)], round=r, env_config=CONFIG, model_hash=MODEL)
    index = store.episode_index()
    valid = [e["id"] for e in index if e["split"] == "valid"]
    assert valid == [9, 19] and len(index) == 22
    with h5py.File(store.path, "r") as f:
        assert sorted(f["mask/train"][()].tolist() + f["mask/valid"][()].tolist()) == list(range(22))
    lengths = {e["id"]: e["length"] for e in index}
    rounds = {e["id"]: e["round"] for e in index}
    got = store.load(("reward",), split="train", rounds=[1, 2])
    assert len(got["reward"]) == sum(lengths[i] for i in lengths if rounds[i] in (1, 2) and i not in valid)
    capped = store.load(("reward",), split=None, last_rounds=1)  # the mocap round + round 3
    assert len(capped["reward"]) == sum(lengths[i] for i in lengths if rounds[i] in (0, 3))
    assert len(store.load(("reward",), split=None, sources=["mocap"])["reward"]) == 10 * 40


def test_refusals_write_nothing(store, tmp_path):
    store.append_round([make_episode(1)], round=0, env_config=CONFIG, model_hash=MODEL)
    before = store.path.read_bytes()
    bad_nan = make_episode(2)
    bad_nan.obs[5, 3] = np.nan
    cases = [
        ([bad_nan], CONFIG, "field obs: expected finite values"),
        ([make_episode(3).__class__(**{**make_episode(3).__dict__, "actions": np.zeros((40, 27))})], CONFIG,
         "field actions: expected shape (40, 28), found (40, 27)"),
        ([make_episode(4)], EnvConfig(clip="walk", action_space="torque"), "env configuration differs"),
        ([make_episode(5)], EnvConfig(clip="run"), "env configuration differs"),
        ([make_episode(6, source="magic")], CONFIG, "expected source in"),
        ([], CONFIG, "at least one episode"),
    ]
    for eps, cfg, words in cases:
        with pytest.raises(StoreError) as err:
            store.append_round(eps, round=1, env_config=cfg, model_hash=MODEL)
        assert words in str(err.value)
    with pytest.raises(StoreError, match="model hash fedcba9876543210 differs from the store's 0123456789abcdef"):
        store.append_round([make_episode(7)], round=1, env_config=CONFIG, model_hash="fedcba9876543210")
    assert store.path.read_bytes() == before


def test_foreign_and_mismatched_files_are_refused(tmp_path, store):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(StoreError, match="expected an imitate demonstration store"):
        DemoStore(foreign)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        DemoStore(text)
    with h5py.File(store.path, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="expected schema version 2, found 99"):
        DemoStore(store.path)
    with pytest.raises(StoreError, match="already exists"):
        DemoStore.create(store.path, CONFIG, model_hash=MODEL)
    with pytest.raises(StoreError, match="no such store"):
        DemoStore(tmp_path / "missing.h5")


def _writer(path, first_round, ready_fd=None):
    """Child process: append rounds of 3 episodes forever (until killed); writes a byte to
    ready_fd once it is about to append."""
    store = DemoStore(path)
    r = first_round
    if ready_fd is not None:
        os.write(ready_fd, b"x")
    while True:
        store.append_round([make_episode(100 * r + k, 400) for k in range(3)], round=r,
                           env_config=CONFIG, model_hash=MODEL)
        r += 1


def _check_consistent(path):
    """Every committed round is whole and exact, and the statistics match the data."""
    store = DemoStore(path)  # opening rolls back a dead writer's journal
    assert not journal_path(path).exists()
    index = store.episode_index()
    rounds = json.loads(store.attrs()["rounds"])
    assert len(index) == 3 * len(rounds) == store.attrs()["next_episode_id"]
    data = store.load(("obs", "actions"), split=None)
    assert sorted({e["round"] for e in index}) == rounds
    assert [e["seed"] for e in index] == [100 * r + k for r in rounds for k in range(3)]
    tail = [make_episode(e["seed"], 400).obs for e in index[-6:]]  # the rounds at risk
    if tail:
        np.testing.assert_array_equal(data["obs"][-len(tail) * 400:], np.concatenate(tail))
    st = store.normalisation("obs")
    assert st["count"] == len(data["obs"])
    if len(data["obs"]):
        np.testing.assert_allclose(st["mean"], data["obs"].mean(0, dtype=np.float64), atol=1e-9)
    return len(rounds)


def test_kill_during_append_never_corrupts(tmp_path):
    """SIGKILL a writer at random instants, many times (IMITATE_KILL_TRIALS, default 30): the
    store always opens with exactly its completed rounds, and appending then goes on."""
    path = tmp_path / "walk.h5"
    DemoStore.create(path, CONFIG, model_hash=MODEL)
    # kill instants scale with this machine's speed: up to 2.5 appends after the writer starts
    probe = DemoStore.create(tmp_path / "probe.h5", CONFIG, model_hash=MODEL)
    start = time.perf_counter()
    probe.append_round([make_episode(k, 400) for k in range(3)], round=0, env_config=CONFIG, model_hash=MODEL)
    append_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    committed, rolled_back = 0, 0
    for _ in range(int(os.environ.get("IMITATE_KILL_TRIALS", "30"))):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _writer(path, committed, ready_w)
            finally:
                os._exit(0)
        os.close(ready_w)  # so that a child dying early ends the read instead of hanging it
        assert os.read(ready_r, 1) == b"x", "the writer died before appending"
        os.close(ready_r)
        time.sleep(rng.uniform(0.0, 2.5 * append_s))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        rolled_back += journal_path(path).exists()
        committed = _check_consistent(path)
    assert committed > 0 and rolled_back > 0  # some kills landed mid-append


def test_concurrent_reader_during_appends(tmp_path):
    path = tmp_path / "walk.h5"
    DemoStore.create(path, CONFIG, model_hash=MODEL)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: 15 rounds, then exit
        try:
            store = DemoStore(path)
            for r in range(15):
                store.append_round([make_episode(100 * r + k, 400) for k in range(3)], round=r,
                                   env_config=CONFIG, model_hash=MODEL)
        finally:
            os._exit(0)
    reader = DemoStore(path)
    loads = 0
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        data = reader.load(("obs",), split=None)
        assert len(data["obs"]) % (3 * 400) == 0  # only whole rounds are ever seen
        loads += 1
    assert loads > 0
    assert _check_consistent(path) == 15


def _two_runs(store):
    """A store of a mocap round and two DAgger runs' rounds (run ids A and B)."""
    from dataclasses import replace

    store.append_round([make_episode(s, 20 + s, "mocap") for s in range(3)], round=0,
                       env_config=CONFIG, model_hash=MODEL)
    for r, run in ((1, "A"), (2, "B"), (3, "A")):
        store.append_round([replace(make_episode(10 * r + s, 15 + s), checkpoint_id=f"{run}:round_{r:03d}.pt")
                            for s in range(4)], round=r, env_config=CONFIG, model_hash=MODEL)
    return store


def test_copy_of_a_run_holds_the_mocap_rounds_and_that_runs_episodes_unchanged(store, tmp_path):
    from imitate.store_stats import validate

    _two_runs(store)
    before = store.path.read_bytes()
    copy = store.copy(tmp_path / "a.h5", runs=["A"])
    assert store.path.read_bytes() == before  # the source is never changed
    validate(copy)  # statistics, splits and digest against the data itself
    original = {e["id"]: e for e in store.episode_index()}
    kept = copy.episode_index()
    assert sorted({e["round"] for e in kept}) == [0, 1, 3]
    assert [e["id"] for e in kept] == [i for i, e in original.items() if e["round"] in (0, 1, 3)]
    assert all(e == original[e["id"]] for e in kept)  # same ids, splits, rounds and attributes
    with h5py.File(store.path, "r") as f, h5py.File(copy.path, "r") as g:  # plain h5py reads
        for e in kept:
            for name in Episode.ARRAYS:
                np.testing.assert_array_equal(g[f"episodes/{e['id']:07d}/{name}"][()],
                                              f[f"episodes/{e['id']:07d}/{name}"][()])
        assert json.loads(g.attrs["copied_from"])["runs"] == ["A"]
    # the copy's statistics are those of its own data
    obs = copy.load(("obs",), split=None)["obs"].astype(np.float64)
    np.testing.assert_allclose(copy.normalisation("obs")["mean"], obs.mean(axis=0), rtol=1e-6, atol=1e-9)


def test_copy_of_everything_has_the_same_statistics_and_refusals_name_what_is_there(store, tmp_path):
    _two_runs(store)
    everything = store.copy(tmp_path / "all.h5")
    with h5py.File(store.path, "r") as f, h5py.File(everything.path, "r") as g:
        for name in ("obs", "expert_actions", "actions"):
            for key in f[f"stats/{name}"]:
                np.testing.assert_array_equal(g[f"stats/{name}/{key}"][()], f[f"stats/{name}/{key}"][()])
    mocap = store.copy(tmp_path / "mocap.h5", sources=["mocap"])
    assert {e["source"] for e in mocap.episode_index()} == {"mocap"}
    with pytest.raises(StoreError, match=r"no runs \['C'\] in this store; it has \['A', 'B'\]"):
        store.copy(tmp_path / "c.h5", runs=["C"])
    with pytest.raises(StoreError, match="no episode is in rounds"):
        store.copy(tmp_path / "d.h5", rounds=[2], runs=["A"])
    with pytest.raises(StoreError, match="already exists"):
        store.copy(tmp_path / "mocap.h5")
    with pytest.raises(StoreError, match="another path"):
        store.copy(store.path, overwrite=True)
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "d.h5").exists()


def test_dataset_copy_from_the_command_line(store, tmp_path):
    import subprocess
    import sys

    _two_runs(store)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = lambda *argv: subprocess.run([sys.executable, "-m", "imitate.cli", "dataset", "copy", *argv],  # noqa: E731
                                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=repo),
                                       timeout=120)
    done = run(str(store.path), str(tmp_path / "b.h5"), "--runs", "B")
    assert done.returncode == 0, done.stderr
    assert "7 episodes" in done.stdout and "rounds [0, 2]" in done.stdout
    bad = run(str(store.path), str(tmp_path / "c.h5"), "--runs", "C")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "it has ['A', 'B']" in bad.stderr


def test_a_copy_that_cannot_be_written_names_the_destination_not_the_source(store, tmp_path):
    _two_runs(store)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match=r"file/c\.h5: cannot write the copy .*walk\.h5 is unchanged"):
        store.copy(tmp_path / "file" / "c.h5")
    made = store.copy(tmp_path / "new" / "folder" / "c.h5")  # missing folders are made
    assert len(made.episode_index()) == len(store.episode_index())


def test_the_store_and_the_configs_load_without_the_simulator_or_torch():
    """The store depends on a schema (names, widths, hashes), not on MuJoCo: a reader of
    stores (stats, export, SFT's data loading) need not compile a model."""
    import subprocess
    import sys

    code = ("import sys, imitate.store, imitate.store_stats, imitate.config; "
            "print(sorted(m for m in ('mujoco', 'torch') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"
