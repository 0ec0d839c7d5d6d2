"""Inspecting and validating a demonstration store (summarize, validate, `imitate dataset
stats --json`, `imitate dataset validate`), checked against the data read back with plain h5py."""

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import synthetic_frames, write_clip

from imitate.cli import main
from imitate.config import EnvConfig
from imitate.dataset import BuildConfig, build_mocap_store
from imitate.errors import StoreError
from imitate.store import DemoStore, Episode, _digest
from imitate.store_stats import summarize, validate

# The observation's groups (179 dims), written out.
OBS_DIM = 179
OBS_GROUPS = {"phase": (0, 3), "root": (3, 16), "joint angles": (16, 44), "joint rates": (44, 72),
              "body positions": (72, 114), "reference ahead": (114, 179)}
OBS_PREFIXES = {"phase": "phase", "root": "root_", "joint angles": "q_", "joint rates": "dq_",
                "body positions": "pos_", "reference ahead": "ref_"}
AT_LIMIT = 0.999


def make_episode(seed: int, length: int, source: str = "dagger", clip: str = "synthetic",
                 extremes: bool = False) -> Episode:
    """Deterministic content from the seed; about a quarter of the labels sit at +-1.  extremes:
    each obs group's minimum sits in its first column and its maximum in its last, both unique
    to the group."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(length, OBS_DIM)).astype(np.float32)
    if extremes:
        for lo, hi in OBS_GROUPS.values():
            obs[0, lo], obs[1, hi - 1] = -50.0 - lo, 50.0 + hi
    return Episode(
        obs=obs,
        expert_actions=rng.uniform(-1.3, 1.3, (length, 28)).clip(-1, 1).astype(np.float32),
        actions=rng.uniform(-1.2, 1.2, (length, 28)).clip(-1, 1).astype(np.float32),
        qpos=rng.normal(size=(length, 35)), qvel=rng.normal(size=(length, 34)),
        time_s=np.arange(length) / 30.0, phase=rng.uniform(0, 1, length).astype(np.float32),
        reward=rng.uniform(0, 1, length).astype(np.float32),
        terminated=np.arange(length) == length - 1, truncated=np.zeros(length, bool),
        source=source, clip=clip, checkpoint_id=f"ckpt{seed}", beta=0.5, seed=seed,
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A store of 4 mocap episodes (round 0), then round 1 (3 dagger episodes, two clips) and
    round 2 (2 dagger, 1 rollout); every 3rd episode is validation.  Tests only read it."""
    tmp = tmp_path_factory.mktemp("mixed")
    clip_path = write_clip(tmp / "synthetic.txt", synthetic_frames())
    config = EnvConfig(clip=str(clip_path))
    store = build_mocap_store(tmp / "mixed.h5", config, BuildConfig(offsets=2, copies=1, valid_every=3))
    store.append_round([make_episode(11, 20), make_episode(12, 35), make_episode(13, 9, clip="other")],
                       round=1, env_config=config, model_hash=store.model_hash)
    store.append_round([make_episode(21, 50), make_episode(22, 14, extremes=True),
                        make_episode(23, 27, source="rollout")], round=2, env_config=config,
                       model_hash=store.model_hash)
    return store.path


def read_back(path) -> dict:
    """Everything the checks need, read with plain h5py."""
    with h5py.File(path, "r") as f:
        eps = [{"id": int(name), "source": g.attrs["source"], "round": int(g.attrs["round"]),
                "clip": g.attrs["clip"], "length": len(g["reward"]),
                "return": float(g["reward"][()].astype(np.float64).sum()),
                "obs": g["obs"][()], "expert_actions": g["expert_actions"][()], "actions": g["actions"][()]}
               for name, g in sorted(f["episodes"].items())]
        masks = {s: f[f"mask/{s}"][()].tolist() for s in ("train", "valid")}
        obs_names = json.loads(f.attrs["obs_names"])
    return {"episodes": eps, "masks": masks, "obs_names": obs_names}


def test_obs_group_figures_match_the_stored_names(mixed):
    names = read_back(mixed)["obs_names"]
    assert len(names) == OBS_DIM
    covered = []
    for group, (lo, hi) in OBS_GROUPS.items():
        assert all(n.startswith(OBS_PREFIXES[group]) for n in names[lo:hi]), group
        covered += range(lo, hi)
    assert covered == list(range(OBS_DIM))


def test_stats_json_agrees_with_the_data(mixed, capsys):
    assert main(["dataset", "stats", str(mixed), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    data = read_back(mixed)
    eps = data["episodes"]
    assert len(eps) == 10

    meta = out["metadata"]
    assert meta["episodes"] == 10 and meta["steps"] == sum(e["length"] for e in eps) == 4 * 8 + 64 + 91
    assert meta["obs_dim"] == OBS_DIM and meta["act_dim"] == 28 and meta["valid_every"] == 3
    assert meta["build_config"]["offsets"] == 2 and out["path"] == str(mixed)

    expected = {}
    for e in eps:
        expected.setdefault((e["source"], e["round"], e["clip"]), []).append(e)
    assert set(expected) == {("mocap", 0, "synthetic"), ("dagger", 1, "synthetic"), ("dagger", 1, "other"),
                             ("dagger", 2, "synthetic"), ("rollout", 2, "synthetic")}
    got = {(r["source"], r["round"], r["clip"]): r for r in out["rounds"]}
    assert set(got) == set(expected) and len(out["rounds"]) == len(expected)
    assert [r["round"] for r in out["rounds"]] == sorted(r["round"] for r in out["rounds"])
    for key, group in expected.items():
        row = got[key]
        lengths = [e["length"] for e in group]
        returns = [e["return"] for e in group]
        assert row["episodes"] == len(group), key
        assert row["steps"] == sum(lengths), key
        assert row["length"] == pytest.approx({"mean": sum(lengths) / len(lengths), "min": min(lengths),
                                               "max": max(lengths)}, rel=1e-12), key
        assert row["return"] == pytest.approx({"mean": sum(returns) / len(returns), "min": min(returns),
                                               "max": max(returns)}, rel=1e-9), key

    length_of = {e["id"]: e["length"] for e in eps}
    assert data["masks"]["valid"] == [2, 5, 8]  # every 3rd id
    for split in ("train", "valid"):
        ids = data["masks"][split]
        assert out["splits"][split] == {"episodes": len(ids), "steps": sum(length_of[i] for i in ids)}
    assert out["splits"]["train"]["episodes"] + out["splits"]["valid"]["episodes"] == 10

    for name in ("expert_actions", "actions"):
        a = np.concatenate([e[name] for e in eps]).astype(np.float64)
        field = out["fields"][name]
        assert field["shape"] == [28]
        assert field["min"] == a.min() and field["max"] == a.max()
        fraction = np.count_nonzero(np.abs(a) >= AT_LIMIT) / a.size
        assert 0.05 < fraction < 0.5  # the figure is tested on a non-trivial count
        assert field["at_limit_fraction"] == pytest.approx(fraction, rel=1e-12)
    obs = np.concatenate([e["obs"] for e in eps])
    assert obs.shape == (meta["steps"], OBS_DIM)
    for group, (lo, hi) in OBS_GROUPS.items():
        field = out["fields"][f"obs/{group}"]
        assert field["shape"] == [hi - lo]
        assert field["min"] == float(obs[:, lo:hi].min()), group
        assert field["max"] == float(obs[:, lo:hi].max()), group
        assert (field["min"], field["max"]) == (-50.0 - lo, 50.0 + hi)  # the planted extremes
    assert set(out["fields"]) == {f"obs/{g}" for g in OBS_GROUPS} | {"expert_actions", "actions"}


def test_summarize_is_what_the_cli_prints(mixed, capsys):
    assert main(["dataset", "stats", str(mixed), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = json.loads(json.dumps(summarize(DemoStore(mixed))))
    for key in ("rounds", "fields", "splits"):
        assert printed[key] == direct[key]


def test_validate_accepts_a_good_store(mixed, capsys):
    eps = read_back(mixed)["episodes"]
    counts = validate(DemoStore(mixed))
    assert counts == {"episodes": len(eps), "steps": sum(e["length"] for e in eps), "checksums": True} == {
        "episodes": 10, "steps": 187, "checksums": True}
    assert main(["dataset", "validate", str(mixed)]) == 0
    assert f"{mixed}: valid (10 episodes, 187 steps, checksums verified)" in capsys.readouterr().out


def _nan_in_obs(f):
    f["episodes/0000005/obs"][3, 20] = np.nan
    return ["episode 5/obs", "step 3"]


def _stats_mean(f):
    mean = f["stats/obs/mean"][()]
    mean[17] += 0.5
    f["stats/obs/mean"][...] = mean
    return ["stats/obs/mean", "dimension 17"]


def _missing_qvel(f):
    del f["episodes/0000002/qvel"]
    return ["episode 2", "'qvel'"]


def _id_in_both_masks(f):
    valid = f["mask/valid"]
    valid.resize((len(valid) + 1,))
    valid[-1] = 4  # also in train
    return ["mask", "partition"]


def _id_in_neither_mask(f):
    train = f["mask/train"]
    kept = [i for i in train[()].tolist() if i != 6]
    train.resize((len(kept),))
    train[...] = kept
    return ["mask", "partition"]


def _rounds_attribute(f):
    f.attrs["rounds"] = json.dumps([0, 1, 2, 3])
    return ["root attributes", "rounds"]


def _return_attribute(f):
    g = f["episodes/0000007"]
    g.attrs["return"] = float(g.attrs["return"]) + 1.0
    return ["episode 7", "return"]


DAMAGE = [_nan_in_obs, _stats_mean, _missing_qvel, _id_in_both_masks, _id_in_neither_mask, _rounds_attribute,
          _return_attribute]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_validate_names_each_kind_of_damage(mixed, tmp_path, capsys, damage):
    path = tmp_path / "damaged.h5"
    shutil.copy(mixed, path)
    with h5py.File(path, "r+") as f:
        words = damage(f)
        f.attrs["digest"] = _digest(f)  # sealed again: a consistent file whose content is wrong (a writer's bug)
    with pytest.raises(StoreError) as err:
        validate(DemoStore(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    for w in words:
        assert w in message, (w, message)
    capsys.readouterr()
    assert main(["dataset", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert str(path) in captured.err and words[0] in captured.err and "Traceback" not in captured.err
    assert "valid (" not in captured.out


@pytest.mark.parametrize("command", ["stats", "validate"])
def test_foreign_files_are_one_clear_error(tmp_path, capsys, command):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
        f.attrs["format"] = "something.else"
    assert main(["dataset", command, str(foreign)]) == 2
    captured = capsys.readouterr()
    assert str(foreign) in captured.err and "expected an imitate demonstration store" in captured.err
    assert "something.else" in captured.err and "Traceback" not in captured.err and captured.out == ""
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    assert main(["dataset", command, str(text)]) == 2
    err = capsys.readouterr().err
    assert str(text) in err and "not an HDF5 file" in err
    assert main(["dataset", command, str(tmp_path / "missing.h5")]) == 2
    assert "no such store" in capsys.readouterr().err


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """20 000 rows of N(0, 1) observations (50 dagger episodes of 400 steps)."""
    tmp = tmp_path_factory.mktemp("big")
    config = EnvConfig(clip=str(write_clip(tmp / "synthetic.txt", synthetic_frames())))
    store = DemoStore.create(tmp / "big.h5", config, model_hash="0123456789abcdef")
    store.append_round([make_episode(100 + k, 400) for k in range(50)], round=1, env_config=config,
                       model_hash=store.model_hash)
    return store.path


@pytest.mark.parametrize("key, shift", [("mean", 0.01), ("min", -0.01)])
def test_validate_catches_a_small_change_of_the_statistics_of_a_large_store(big, tmp_path, key, shift):
    with h5py.File(big, "r") as f:  # the data's own figure, so the shift is a real disagreement
        col = np.concatenate([g["obs"][:, 0] for g in f["episodes"].values()]).astype(np.float64)
        stored = f[f"stats/obs/{key}"][0]
    assert len(col) == 20_000 and stored == pytest.approx(col.mean() if key == "mean" else col.min(), abs=1e-9)
    path = tmp_path / "shifted.h5"
    shutil.copy(big, path)
    with h5py.File(path, "r+") as f:
        values = f[f"stats/obs/{key}"][()]
        values[0] += shift
        f[f"stats/obs/{key}"][...] = values
        f.attrs["digest"] = _digest(f)  # sealed again: only the comparison with the data can tell
    with pytest.raises(StoreError, match=f"stats/obs/{key}"):
        validate(DemoStore(path))
