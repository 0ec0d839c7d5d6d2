"""Export to Minari, read back with Minari's own reader."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from imitate.config import EnvConfig
from imitate.errors import StoreError
from imitate.experts.pd import PDExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation, model_hash_of
from imitate.store import DemoStore, Episode

minari = pytest.importorskip("minari")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rollout(config: EnvConfig, steps: int, seed: int):
    """steps + 1 control steps of PD servos with noise from clip time 0.1: every field a store
    episode holds, and the observation after the last step."""
    clip = load_clip(config.clip)
    sim = Simulation(config, 1, nthread=1, clip=clip)
    sim.reset(np.array([0]), np.array([0.1]))
    expert, rng = PDExpert(clip, config.action_space), np.random.default_rng(seed)
    rows = {k: [] for k in ("obs", "expert_actions", "actions", "qpos", "qvel", "time_s", "reward", "terminated",
                            "truncated")}
    for _ in range(steps + 1):
        label = expert.label(sim)
        action = np.clip(label + rng.normal(0, 0.1, label.shape), -1, 1)
        for key, value in (("obs", sim.obs[0]), ("expert_actions", label[0]), ("actions", action[0]),
                           ("qpos", sim.qpos[0]), ("qvel", sim.qvel[0]), ("time_s", sim.ref_time_s[0])):
            rows[key].append(np.array(value, copy=True))
        reward, term, trunc, _ = sim.step(action)
        rows["reward"].append(reward[0])
        rows["terminated"].append(term[0])
        rows["truncated"].append(trunc[0])
    after = sim.obs[0].copy()
    cut = {k: np.array(v[:steps]) for k, v in rows.items()}
    cut["truncated"][-1] = True  # the episode as stored ends here
    episode = Episode(**cut, phase=clip.phase(cut["time_s"]).astype(np.float32), source="rollout",
                      clip=clip.name, seed=seed)
    return episode, np.array(rows["obs"][steps]), after


@pytest.fixture
def exported(tmp_path, synthetic_clip_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    config = EnvConfig(clip=str(synthetic_clip_path))
    store = DemoStore.create(tmp_path / "s.h5", config, model_hash=model_hash_of(config))
    made = [rollout(config, 12 + k, seed=k) for k in range(3)]
    store.append_round([m[0] for m in made], round=1, env_config=config, model_hash=store.model_hash)
    return store, made


def test_minari_reads_back_every_episode(exported):
    from imitate.export import export_minari

    store, made = exported
    export_minari(store, "imitate/synthetic-rollout-v0")
    dataset = minari.load_dataset("imitate/synthetic-rollout-v0")  # Minari's own reader
    assert dataset.total_episodes == 3 and dataset.total_steps == sum(len(m[0]) for m in made)
    assert dataset.observation_space.shape == (179,) and dataset.action_space.shape == (28,)
    for data, (episode, next_obs, _) in zip(dataset.iterate_episodes(), made, strict=True):
        assert data.observations.shape == (len(episode) + 1, 179) and data.actions.shape == (len(episode), 28)
        np.testing.assert_array_equal(data.observations[:-1], episode.obs)
        # the observation after the last stored step, simulated again: the rollout's own
        np.testing.assert_allclose(data.observations[-1], next_obs, atol=1e-4)
        np.testing.assert_array_equal(data.actions, episode.expert_actions.astype(np.float32))
        np.testing.assert_allclose(data.rewards, episode.reward, rtol=1e-6)
        np.testing.assert_array_equal(data.terminations, episode.terminated)
        np.testing.assert_array_equal(data.truncations, episode.truncated)
    env = dataset.recover_environment()
    assert env.unwrapped.config == store.env_config
    env.close()


def test_minari_export_from_the_command_line(exported):
    store, made = exported
    command = [sys.executable, "-m", "imitate.cli", "dataset", "export", str(store.path), "--name",
               "imitate/synthetic-executed-v0", "--actions", "executed"]
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "exported as the Minari dataset imitate/synthetic-executed-v0 (3 episodes" in done.stdout
    episodes = list(minari.load_dataset("imitate/synthetic-executed-v0").iterate_episodes())
    for data, (episode, _, _) in zip(episodes, made, strict=True):
        np.testing.assert_array_equal(data.actions, episode.actions.astype(np.float32))
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_robomimic_layout(exported, tmp_path):
    """The file robomimic's scripts and SequenceDataset read: checked with h5py against the
    layout (robomimic's docs), and with robomimic itself where it is installed."""
    import h5py

    from imitate.export import export_robomimic
    from imitate.observation import OBS_GROUPS

    store, made = exported
    out = tmp_path / "robomimic.hdf5"
    assert export_robomimic(store, out) == 3
    splits = {e["id"]: e["split"] for e in store.episode_index()}
    with h5py.File(out, "r") as f:
        assert f["data"].attrs["total"] == sum(len(m[0]) for m in made)
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "imitate/Track-v0"
        masks = {k: sorted(n.decode() for n in f[f"mask/{k}"][()]) for k in ("train", "valid")}
        assert masks == {k: [f"demo_{i}" for i in range(3) if splits[i] == k] for k in ("train", "valid")}
        for i, (episode, next_obs, _) in enumerate(made):
            demo = f[f"data/demo_{i}"]
            assert demo.attrs["num_samples"] == len(episode)
            order = sorted(OBS_GROUPS.items(), key=lambda kv: kv[1].start)
            obs = np.concatenate([demo[f"obs/{name.replace(' ', '_')}"][()] for name, _ in order], axis=1)
            nxt = np.concatenate([demo[f"next_obs/{name.replace(' ', '_')}"][()] for name, _ in order], axis=1)
            np.testing.assert_array_equal(obs, episode.obs)
            np.testing.assert_array_equal(nxt[:-1], episode.obs[1:])
            np.testing.assert_allclose(nxt[-1], next_obs, atol=1e-4)
            np.testing.assert_array_equal(demo["actions"][()], episode.expert_actions.astype(np.float32))
            np.testing.assert_array_equal(demo["dones"][()], episode.terminated | episode.truncated)
            np.testing.assert_array_equal(demo["states"][()], np.c_[episode.qpos, episode.qvel])
    with pytest.raises(StoreError, match="already exists"):
        export_robomimic(store, out)


@pytest.fixture(scope="module")
def robomimic_reader(tmp_path_factory):
    """robomimic's own reader.  robomimic's declared dependencies are heavy (simulators, an EGL
    probe built from source), but its dataset reader needs only h5py, numpy, torch, tqdm and
    termcolor: where robomimic is not installed, its wheel and those two are installed without
    dependencies into a folder of this test session's (skipped where that cannot be done)."""
    try:
        import robomimic  # noqa: F401
    except ImportError:
        target = tmp_path_factory.mktemp("robomimic")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                               "robomimic==0.3.0", "tqdm", "termcolor"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"robomimic could not be installed here: {done.stderr.strip()[-200:]}")
        sys.path.insert(0, str(target))
    import robomimic.utils.obs_utils as obs_utils
    from robomimic.utils.dataset import SequenceDataset

    return obs_utils, SequenceDataset


def test_robomimic_reads_the_export(exported, tmp_path, robomimic_reader):
    obs_utils, SequenceDataset = robomimic_reader  # noqa: N806 (robomimic's class)
    from imitate.export import export_robomimic

    store, made = exported
    out = tmp_path / "robomimic.hdf5"
    export_robomimic(store, out)
    keys = ("phase", "root", "joint_angles", "joint_rates", "body_positions", "reference_ahead")
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": list(keys)}})
    dataset = SequenceDataset(hdf5_path=str(out), obs_keys=keys, dataset_keys=("actions", "rewards", "dones"),
                              load_next_obs=True, frame_stack=1, seq_length=1, pad_frame_stack=True,
                              pad_seq_length=True, get_pad_mask=False, goal_mode=None, hdf5_cache_mode="low_dim",
                              hdf5_use_swmr=True, hdf5_normalize_obs=False, filter_by_attribute=None)
    assert len(dataset) == sum(len(m[0]) for m in made)
    np.testing.assert_array_equal(dataset[0]["actions"][0], made[0][0].expert_actions[0].astype(np.float32))


def test_robomimic_export_from_the_command_line(exported, tmp_path):
    store, _ = exported
    env = dict(os.environ, PYTHONPATH=REPO)
    base = [sys.executable, "-m", "imitate.cli", "dataset", "export", str(store.path), "--format", "robomimic"]
    missing = subprocess.run(base, capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 2 and "expected --out PATH.hdf5" in missing.stderr
    done = subprocess.run(base + ["--out", str(tmp_path / "r.hdf5")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0 and "3 demos" in done.stdout, done.stderr
