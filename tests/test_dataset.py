"""The mocap round of a demonstration store (build_mocap_store, `imitate dataset build`),
checked against the clip, closed forms, MuJoCo's own model and plain h5py reads."""

import json
from importlib import resources

import h5py
import mujoco
import numpy as np
import pytest
from conftest import synthetic_frames, write_clip

from imitate.cli import main
from imitate.config import EnvConfig
from imitate.dataset import BuildConfig, build_mocap_store
from imitate.errors import ConfigError, StoreError
from imitate.experts.pd import PDExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation

# The humanoid's layout, written out: qpos = root pos (3), root quat (4), 28 hinges; qvel =
# root linear (3), root angular (3), 28 hinge rates.
HINGE_Q = slice(7, 35)
HINGE_V = slice(6, 34)
ROOT_Q = slice(0, 7)
ROOT_V = slice(0, 6)
LOOKAHEAD_S = 1.0 / 30.0  # the expert aims at the reference this far ahead
POSITION_GAIN = 1.0  # g: the PD expert's default
KD_OVER_KP = 0.1  # DeepMimic's kd / kp for every joint (humanoid3d_ctrl.txt)


def read_episodes(path) -> list[dict]:
    """Every episode's arrays and attributes, in id order, with plain h5py."""
    with h5py.File(path, "r") as f:
        return [{**{k: g[k][()] for k in g}, "attrs": dict(g.attrs), "id": int(name)}
                for name, g in sorted(f["episodes"].items())]


def mujoco_model() -> mujoco.MjModel:
    """The humanoid compiled by MuJoCo straight from the asset (not through imitate.humanoid)."""
    return mujoco.MjModel.from_xml_path(str(resources.files("imitate") / "assets" / "humanoid.xml"))


def actuator_addresses(model):
    """qpos and qvel addresses of the joint each actuator drives, by MuJoCo's tables."""
    joints = model.actuator_trnid[:, 0]
    return model.jnt_qposadr[joints], model.jnt_dofadr[joints]


@pytest.fixture
def config(synthetic_clip_path):
    return EnvConfig(clip=str(synthetic_clip_path))


@pytest.fixture
def clip(synthetic_clip_path):
    return load_clip(synthetic_clip_path)


@pytest.fixture
def built(tmp_path, config):
    """A small store: 3 clean passes and 2 noise levels x 3 perturbed passes (9 episodes)."""
    build = BuildConfig(offsets=3, joint_noise_rad=(0.05, 0.3), velocity_noise_rad_s=(0.5, 2.0), copies=3,
                        seed=7, valid_every=4)
    build_mocap_store(tmp_path / "mocap.h5", config, build)
    return tmp_path / "mocap.h5", build


def test_round_zero_holds_the_planned_episodes(built, clip, config):
    path, build = built
    eps = read_episodes(path)
    assert build.num_episodes == 3 + 3 * 2 == len(eps)
    assert [e["id"] for e in eps] == list(range(9))
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["rounds"]) == [0]
        assert int(f.attrs["next_episode_id"]) == 9
        assert sorted(f["mask/valid"][()].tolist()) == [3, 7]  # every 4th episode
        assert sorted(f["mask/train"][()].tolist()) == [0, 1, 2, 4, 5, 6, 8]
        assert json.loads(f.attrs["build_config"])["offsets"] == 3
        assert EnvConfig.from_json(f.attrs["env_config"]) == config
    # 9 frames of 1/30 s: 8/30 s, sampled at 30 Hz: 8 steps per pass
    steps = int(np.floor(clip.duration_s / config.control_dt + 1e-9))
    assert steps == 8
    dt = 1.0 / 30.0
    for e in eps:
        a = e["attrs"]
        assert a["source"] == "mocap" and a["round"] == 0 and a["clip"] == "synthetic"
        assert a["length"] == steps and len(e["obs"]) == steps and len(e["qpos"]) == steps
        assert a["seed"] == 7 * 1000 + e["id"]
        np.testing.assert_allclose(np.diff(e["time_s"]), dt, rtol=0, atol=1e-12)
        assert 0.0 <= e["time_s"][0] < dt
        np.testing.assert_array_equal(e["actions"], e["expert_actions"])  # mocap executes nothing
        assert not e["terminated"].any() and e["truncated"].tolist() == [False] * 7 + [True]
        np.testing.assert_allclose(e["phase"], (e["time_s"] % clip.duration_s) / clip.duration_s, atol=1e-6)
        assert a["return"] == pytest.approx(float(e["reward"].astype(np.float64).sum()), abs=1e-9)
    for k in range(3):  # clean pass k starts at k dt / offsets
        np.testing.assert_allclose(eps[k]["time_s"], k * dt / 3 + dt * np.arange(8), rtol=0, atol=1e-12)


@pytest.mark.parametrize("frame_dt, steps", [(1 / 30, 8), (0.0333, 7), (0.05, 12)])
def test_episode_length_is_the_floor_of_duration_over_control_dt(tmp_path, frame_dt, steps):
    """8 frame intervals: 8/30 s -> 8 steps; 0.2664 s -> 7.992 -> 7 (floor, not round); 0.4 s -> 12."""
    path = write_clip(tmp_path / "c.txt", synthetic_frames(dt=frame_dt))
    config = EnvConfig(clip=str(path))
    build_mocap_store(tmp_path / "s.h5", config, BuildConfig(offsets=1, copies=0))
    assert int(np.floor(8 * frame_dt * 30 + 1e-9)) == steps
    assert [len(e["reward"]) for e in read_episodes(tmp_path / "s.h5")] == [steps]


def test_clean_passes_are_the_reference_with_reward_one(built, clip):
    eps = read_episodes(built[0])[:3]
    for e in eps:
        np.testing.assert_array_equal(e["qpos"], clip.qpos(e["time_s"]))
        np.testing.assert_array_equal(e["qvel"], clip.qvel(e["time_s"]))
        np.testing.assert_allclose(e["reward"], 1.0, rtol=0, atol=1e-6)


def test_perturbed_passes_carry_the_configured_noise(built, clip):
    path, build = built
    eps = read_episodes(path)
    for level, (joint_std, vel_std) in enumerate(zip(build.joint_noise_rad, build.velocity_noise_rad_s,
                                                     strict=True)):
        group = eps[3 + 3 * level: 3 + 3 * (level + 1)]
        dq, dv = [], []
        for e in group:
            ref_q, ref_v = clip.qpos(e["time_s"]), clip.qvel(e["time_s"])
            np.testing.assert_array_equal(e["qpos"][:, ROOT_Q], ref_q[:, ROOT_Q])  # root untouched
            np.testing.assert_array_equal(e["qvel"][:, ROOT_V], ref_v[:, ROOT_V])
            dq.append(e["qpos"][:, HINGE_Q] - ref_q[:, HINGE_Q])
            dv.append(e["qvel"][:, HINGE_V] - ref_v[:, HINGE_V])
            assert (e["reward"] < 1.0).all()
        dq, dv = np.concatenate(dq).ravel(), np.concatenate(dv).ravel()  # 3 x 8 x 28 = 672 draws
        assert dq.std() == pytest.approx(joint_std, rel=0.15)
        assert dv.std() == pytest.approx(vel_std, rel=0.15)
        assert abs(dq.mean()) < 5 * joint_std / np.sqrt(dq.size)
        assert (np.abs(dq) > 0).all()


def test_labels_are_the_pd_expert_of_the_stored_state(built, clip):
    expert = PDExpert(clip, "pd_target")
    for e in read_episodes(built[0]):
        np.testing.assert_array_equal(e["expert_actions"],
                                      expert(e["qpos"], e["qvel"], e["time_s"]).astype(np.float32))


def test_pd_target_labels_equal_the_closed_form(built, clip):
    """clip((r + g (r - q) + (kd/kp) dr - mid) / half, -1, 1), r and dr the reference a lookahead ahead,
    mid and half of each actuator's ctrlrange as MuJoCo compiles it."""
    model = mujoco_model()
    qadr, vadr = actuator_addresses(model)
    assert qadr.tolist() == list(range(7, 35)) and vadr.tolist() == list(range(6, 34))
    kp, kv = model.actuator_gainprm[:, 0], -model.actuator_biasprm[:, 2]
    np.testing.assert_allclose(kv / kp, KD_OVER_KP, rtol=1e-12)  # the figure, as the model has it
    lo, hi = model.actuator_ctrlrange.T
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    clipped = 0
    for e in read_episodes(built[0]):
        ahead = e["time_s"] + LOOKAHEAD_S
        r, dr = clip.qpos(ahead)[:, qadr], clip.qvel(ahead)[:, vadr]
        q = e["qpos"][:, qadr]
        expected = np.clip((r + POSITION_GAIN * (r - q) + KD_OVER_KP * dr - mid) / half, -1.0, 1.0)
        np.testing.assert_allclose(e["expert_actions"], expected, rtol=0, atol=2e-7)
        clipped += (np.abs(expected) == 1.0).sum()
    assert clipped > 0  # the clip to [-1, 1] was exercised


def test_torque_labels_equal_the_closed_form(tmp_path, synthetic_clip_path, clip):
    """clip((kp (r - q) + kd dr) / limit, -1, 1), with kp, kd, the torque limit from MuJoCo's servos."""
    config = EnvConfig(clip=str(synthetic_clip_path), action_space="torque")
    build_mocap_store(tmp_path / "t.h5", config, BuildConfig(offsets=1, joint_noise_rad=(0.2,),
                                                             velocity_noise_rad_s=(1.0,), copies=2))
    model = mujoco_model()
    qadr, vadr = actuator_addresses(model)
    kp, kd = model.actuator_gainprm[:, 0], -model.actuator_biasprm[:, 2]
    limit = model.actuator_forcerange[:, 1]
    for e in read_episodes(tmp_path / "t.h5"):
        ahead = e["time_s"] + LOOKAHEAD_S
        r, dr = clip.qpos(ahead)[:, qadr], clip.qvel(ahead)[:, vadr]
        expected = np.clip((kp * (r - e["qpos"][:, qadr]) + kd * dr) / limit, -1.0, 1.0)
        np.testing.assert_allclose(e["expert_actions"], expected, rtol=0, atol=2e-7)


def test_stored_observations_and_rewards_are_the_envs(built, config):
    sim = Simulation(config, 1)
    eps = read_episodes(built[0])
    checked = 0
    for e in (eps[1], eps[4], eps[8]):  # a clean pass and one of each noise level
        for row in (0, 3, 7):
            sim.set_state(e["qpos"][row:row + 1], e["qvel"][row:row + 1], e["time_s"][row:row + 1])
            np.testing.assert_allclose(e["obs"][row], sim.obs[0], rtol=1e-6, atol=1e-6)
            assert e["reward"][row] == pytest.approx(float(sim.terms.total[0]), abs=1e-6)
            checked += 1
    assert checked == 9


def test_existing_store_is_kept_unless_overwrite(built, config):
    path, _ = built
    before = path.read_bytes()
    listing = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(StoreError, match="already exists"):
        build_mocap_store(path, config, BuildConfig(offsets=1, copies=0))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == listing  # no temporary left behind
    build_mocap_store(path, config, BuildConfig(offsets=2, copies=0), overwrite=True)
    eps = read_episodes(path)
    assert len(eps) == 2 and all(e["attrs"]["round"] == 0 for e in eps)
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["build_config"])["offsets"] == 2
        assert int(f.attrs["next_episode_id"]) == 2


@pytest.mark.parametrize("kwargs, words", [
    ({"joint_noise_rad": (0.1,), "velocity_noise_rad_s": (0.5, 1.0)}, "one entry per level"),
    ({"joint_noise_rad": (0.1, 0.2, 0.3)}, "one entry per level"),
    ({"joint_noise_rad": (-0.1, 0.1)}, "noise levels must be >= 0"),
    ({"velocity_noise_rad_s": (0.5, -1.0)}, "noise levels must be >= 0"),
    ({"offsets": 0}, "offsets must be >= 1"),
    ({"copies": -1}, "copies >= 0"),
])
def test_build_config_refuses_bad_values(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        BuildConfig(**kwargs)


def test_build_config_counts_its_episodes():
    assert BuildConfig().num_episodes == 4 + 4 * 2
    assert BuildConfig(offsets=2, joint_noise_rad=[0.1, 0.2, 0.3], velocity_noise_rad_s=[1, 2, 3],
                       copies=5).num_episodes == 2 + 5 * 3
    assert BuildConfig(joint_noise_rad=(), velocity_noise_rad_s=(), copies=3).num_episodes == 4


def test_cli_build_writes_a_store_that_validates(tmp_path, synthetic_clip_path, capsys):
    out = tmp_path / "x.h5"
    assert main(["dataset", "build", str(synthetic_clip_path), "--out", str(out), "--offsets", "2",
                 "--copies", "1"]) == 0
    eps = read_episodes(out)
    assert len(eps) == 2 + 1 * 2  # 2 clean passes, 1 copy per default noise level (0.05, 0.1)
    assert all(e["attrs"]["source"] == "mocap" and len(e["reward"]) == 8 for e in eps)
    with h5py.File(out, "r") as f:
        built = json.loads(f.attrs["build_config"])
    assert built["joint_noise_rad"] == [0.05, 0.1] and built["velocity_noise_rad_s"] == [0.5, 1.0]
    assert "32 states labelled in" in " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert main(["dataset", "validate", str(out)]) == 0
    assert "valid (4 episodes, 32 steps, checksums verified)" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["dataset", "build", str(synthetic_clip_path), "--out", str(out), "--offsets", "1"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "already exists" in err and "Traceback" not in err
    assert out.read_bytes() == before


def test_cli_build_default_out_is_named_after_the_clip(tmp_path, synthetic_clip_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["dataset", "build", str(synthetic_clip_path), "--offsets", "1", "--copies", "0"]) == 0
    assert (tmp_path / "datasets" / "synthetic.h5").is_file()


def test_every_episode_records_its_labellers_provenance(tmp_path, synthetic_clip_path, clip):
    """The expert's kind and settings are in every episode the build writes (read with h5py)."""
    config = EnvConfig(clip=str(synthetic_clip_path))
    expert = PDExpert(clip, position_gain=0.5)
    path = tmp_path / "p.h5"
    build_mocap_store(path, config, BuildConfig(offsets=2, copies=1), expert=expert)
    with h5py.File(path, "r") as f:
        episodes = list(f["episodes"].values())
        recorded = [json.loads(g.attrs["labelled_by"]) for g in episodes]
        ids = {g.attrs["checkpoint_id"] for g in episodes}
    assert len(recorded) == 4 and all(r == recorded[0] for r in recorded)
    assert recorded[0]["kind"] == "pd" and recorded[0]["position_gain"] == 0.5
    assert len(ids) == 1 and ids.pop().startswith("expert:pd:")


class _SlowExpert:
    """An expert of the search's kind (label_states: pass by pass) that can be stopped midway."""

    def __init__(self, stop_after_calls: int | None = None):
        self.calls, self.stop_after_calls = 0, stop_after_calls

    def label_states(self, states, times, keys):
        self.calls += 1
        if self.stop_after_calls is not None and self.calls > self.stop_after_calls:
            raise KeyboardInterrupt  # Ctrl-C midway through the build
        return np.tanh(states[:, 1:29] + np.asarray(times)[:, None])  # a function of the state and time

    def provenance(self):
        return {"kind": "slow-test"}


def test_a_stopped_build_goes_on_where_it_stopped(tmp_path, synthetic_clip_path):
    config = EnvConfig(clip=str(synthetic_clip_path))
    build = BuildConfig(offsets=2, copies=1)  # 4 passes of 8 states: one label_states call per state
    whole = build_mocap_store(tmp_path / "whole.h5", config, build, expert=_SlowExpert())
    out = tmp_path / "stopped.h5"
    with pytest.raises(KeyboardInterrupt):
        build_mocap_store(out, config, build, expert=_SlowExpert(stop_after_calls=2 * 8 + 3))  # in pass 3
    assert not out.exists() and (tmp_path / ".stopped.h5.partial.npz").exists()
    again = _SlowExpert()
    resumed = build_mocap_store(out, config, build, expert=again)
    assert again.calls == 2 * 8  # only passes 3 and 4 were labelled again
    fields = ("obs", "expert_actions", "qpos")
    a, b = whole.load(fields, split=None), resumed.load(fields, split=None)
    for name in fields:
        np.testing.assert_array_equal(a[name], b[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.h5", "synthetic.txt", "whole.h5"]
    # a partial build of other settings is not taken for this one's
    with pytest.raises(KeyboardInterrupt):
        build_mocap_store(tmp_path / "other.h5", config, build, expert=_SlowExpert(stop_after_calls=8))
    other = _SlowExpert()
    build_mocap_store(tmp_path / "other.h5", config, BuildConfig(offsets=2, copies=1, seed=5), expert=other)
    assert other.calls == 4 * 8
