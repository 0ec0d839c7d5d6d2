"""Plan labels: the states a search expert's plans reach from the visited states, labelled by the plans.

The reference is an explicit loop: a Simulation of one humanoid placed in each labelled state,
stepped with its label, then with its plan's actions, stopping where it falls.  The expert's plans
are known: random offsets from the reference's targets, different at every step of the plan."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_frames, write_clip

from imitate import humanoid as hum
from imitate.config import EnvConfig, target_action
from imitate.dagger import DAggerConfig, DAggerTrainer, collect
from imitate.dataset import BuildConfig, build_mocap_store
from imitate.errors import ConfigError
from imitate.experts.pd import PDExpert
from imitate.experts.search import DAGGER_LABELS, SearchExpert
from imitate.motion import load_clip
from imitate.sft import SFTConfig
from imitate.simulation import Simulation
from imitate.store import DemoStore

SMALL = replace(DAGGER_LABELS, candidates=4, horizon=4, planning_hz=150, nthread=1)


class KnownPlans(SearchExpert):
    """A search expert whose plans are drawn, not searched: offsets (n, H, 28) of std 0.1 rad,
    the label their first step; it keeps every labelled state with its plan."""

    def __init__(self, clip, config):
        super().__init__(clip, config, SMALL)
        self.rng, self.labelled = np.random.default_rng(5), []

    def label_states(self, states, times, keys):
        n = len(states)
        self.last_plans = self.rng.normal(0.0, 0.1, (n, self.config.horizon, hum.NU))
        qpos, qvel = states[:, 1:1 + hum.NQ], states[:, 1 + hum.NQ:1 + hum.NQ + hum.NV]
        self.labelled += [(int(k), qpos[i].copy(), qvel[i].copy(), float(times[i]), self.last_plans[i])
                          for i, k in enumerate(keys)]
        return self.planned_actions(0, qpos, times)


def reference_rows(config, clip, qpos, qvel, t, plan, steps):
    """The plan rows of one labelled state by hand: (obs, action, time, fell) per state reached."""
    sim = Simulation(config, 1, nthread=1, clip=clip)
    sim.set_state(qpos[None], qvel[None], np.array([t]))

    def plan_action(j):  # the plan's servo target at its step j: the reference's there plus the offset
        target = clip.qpos(sim.ref_time_s + config.control_dt)[:, hum.HINGE_QPOS] + plan[j]
        return target_action(target, sim.qpos, config.action_space)

    _, terminated, truncated, _ = sim.step(plan_action(0))
    rows = []
    for j in range(1, steps + 1):
        if terminated[0] or truncated[0]:
            break
        obs, now, action = sim.obs[0].copy(), float(sim.ref_time_s[0]), plan_action(j)
        _, terminated, truncated, _ = sim.step(action)
        rows.append((obs, action[0], now, bool(terminated[0])))
    return rows


@pytest.mark.parametrize("max_root_drop_m", [0.3, 0.004])  # the default rule, and one that fells some plans
def test_plan_rows_are_the_plans_followed_open_loop_until_a_fall(synthetic_clip_path, max_root_drop_m):
    config = EnvConfig(clip=str(synthetic_clip_path), random_start=True, max_root_drop_m=max_root_drop_m)
    clip = load_clip(config.clip)
    expert = KnownPlans(clip, config)
    steps, plan_steps = 6, 3
    episodes = collect(Simulation(config, 3, nthread=1, clip=clip), lambda obs: np.zeros((len(obs), 28)), expert,
                       0.5, steps, 4, plan_labels=plan_steps)
    assert len(expert.labelled) == 3 * steps
    n_rows = 0
    for env in range(3):
        per_plan = [reference_rows(config, clip, q, v, t, plan, plan_steps)
                    for k, q, v, t, plan in expert.labelled if k == env]
        expected = [row for rows in per_plan for row in rows]
        planned = [e for e in episodes if e["env"] == env and e["source"] == "plan"]
        n_rows += len(expected)
        if not expected:
            assert not planned
            continue
        (plan,) = planned
        assert [e["source"] for e in episodes if e["env"] == env][-1] == "plan"  # after the env's own episodes
        np.testing.assert_allclose(plan["obs"], [r[0] for r in expected], atol=1e-9)
        np.testing.assert_allclose(plan["expert_actions"], [r[1] for r in expected], atol=1e-12)
        np.testing.assert_array_equal(plan["actions"], plan["expert_actions"])  # executed as labelled
        np.testing.assert_allclose(plan["time_s"], [r[2] for r in expected], atol=1e-12)
        np.testing.assert_array_equal(plan["terminated"], [r[3] for r in expected])
        # each plan's rows end where it fell or after plan_steps rows: one end flag per plan
        ends = plan["terminated"] | plan["truncated"]
        assert not (plan["terminated"] & plan["truncated"]).any()
        np.testing.assert_array_equal(np.flatnonzero(ends) + 1, np.cumsum([len(r) for r in per_plan if r]))
    if max_root_drop_m < 0.01:  # the strict rule cut plans short (the branch is exercised)
        assert 0 < n_rows < plan_steps * 3 * steps
    else:
        assert n_rows == plan_steps * 3 * steps


@pytest.mark.parametrize("warm_start", [False, True])
def test_planned_actions_at_step_zero_are_the_labels(synthetic_clip_path, warm_start):
    """A plan starts with its label (cold MPPI: the weighted mean plan; warm: the best plan kept,
    whose first step the weighted mean replaces)."""
    config = EnvConfig(clip=str(synthetic_clip_path), random_start=True)
    clip = load_clip(config.clip)
    expert = SearchExpert(clip, config, replace(SMALL, warm_start=warm_start))
    sim = Simulation(config, 3, nthread=1, clip=clip)
    sim.reset(np.arange(3), np.array([0.0, 0.05, 0.1]))
    labels = expert.label(sim)
    np.testing.assert_allclose(expert.planned_actions(0, sim.qpos, sim.ref_time_s), labels, atol=1e-12)
    with pytest.raises(ConfigError, match=r"step must be in \[0, 4\); found 4"):
        expert.planned_actions(4, sim.qpos, sim.ref_time_s)


@pytest.fixture(scope="module")
def mocap_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan")
    clip = write_clip(path / "synthetic.txt", synthetic_frames())
    store = path / "store.h5"
    build_mocap_store(store, EnvConfig(clip=str(clip)), BuildConfig(offsets=1, copies=1))
    return store


CONFIG = DAggerConfig(rounds=1, num_envs=2, steps_per_env=4, sft=SFTConfig(epochs=2, threads=1),
                      retrain=SFTConfig(epochs=1, threads=1), eval_episodes=1, eval_horizon_s=0.2, plan_labels=2)


def test_a_round_with_plan_labels_stores_them_as_plan_episodes_and_trains_on_them(mocap_store, tmp_path):
    import shutil

    store_path = Path(shutil.copy(mocap_store, tmp_path / "store.h5"))
    store = DemoStore(store_path)
    clip = load_clip(store.env_config.clip)
    expert = SearchExpert(clip, store.env_config, SMALL)
    trainer = DAggerTrainer(tmp_path / "run", store_path, CONFIG, expert=expert, sim_threads=1)
    with trainer.store.held_for_run():
        trainer.start()
        result = trainer.round(1)
    index = [e for e in store.episode_index() if e["round"] == 1]
    by_source = {s: sum(e["length"] for e in index if e["source"] == s) for s in ("dagger", "plan")}
    assert by_source["dagger"] == result.new_steps == CONFIG.num_envs * CONFIG.steps_per_env
    assert by_source["plan"] == result.plan_steps == CONFIG.plan_labels * result.new_steps  # no plan fell
    mocap = sum(e["length"] for e in store.episode_index() if e["source"] == "mocap")
    assert result.total_steps == mocap + result.new_steps + result.plan_steps
    assert trainer.collected(1) == (result.new_steps, result.plan_steps, result.expert_share)  # as a resume reads it
    curve = (tmp_path / "run" / "learning_curve.csv").read_text().splitlines()
    assert curve[0].split(",")[:4] == ["round", "beta", "new_steps", "plan_steps"]
    assert curve[2].split(",")[3] == str(result.plan_steps)


@pytest.mark.parametrize("plan_labels, expert, words", [
    (1, "pd", "needs an expert that plans"),
    (4, "search", r"below the expert's planning horizon \(4 steps\); found 4"),
])
def test_plan_labels_are_refused_without_a_plan_to_follow(mocap_store, tmp_path, plan_labels, expert, words):
    store = DemoStore(mocap_store)
    clip = load_clip(store.env_config.clip)
    labeller = PDExpert(clip, store.env_config.action_space) if expert == "pd" else \
        SearchExpert(clip, store.env_config, SMALL)
    with pytest.raises(ConfigError, match=words):
        DAggerTrainer(tmp_path / "run", mocap_store, replace(CONFIG, plan_labels=plan_labels), expert=labeller)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_plan_labels_must_be_a_count(value):
    with pytest.raises(ConfigError, match="plan_labels must be an integer >= 0"):
        DAggerConfig(plan_labels=value)


def test_a_plan_episode_exports_as_one_episode_per_plan(mocap_store, tmp_path):
    """robomimic: each plan a demo of its own, done only at its last step."""
    import shutil

    import h5py

    from imitate.export import export_robomimic

    store_path = Path(shutil.copy(mocap_store, tmp_path / "store.h5"))
    store = DemoStore(store_path)
    clip = load_clip(store.env_config.clip)
    trainer = DAggerTrainer(tmp_path / "run", store_path, CONFIG, expert=SearchExpert(clip, store.env_config, SMALL),
                            sim_threads=1)
    with trainer.store.held_for_run():
        trainer.start()
        result = trainer.round(1)
    export_robomimic(store, tmp_path / "plans.hdf5", sources=["plan"])
    with h5py.File(tmp_path / "plans.hdf5", "r") as f:
        demos = [f["data"][name] for name in f["data"]]
        assert len(demos) == result.new_steps  # one plan per visited state, none fell
        assert all(d.attrs["num_samples"] == CONFIG.plan_labels for d in demos)
        assert all(list(d["dones"][()]) == [0] * (CONFIG.plan_labels - 1) + [1] for d in demos)


def test_the_command_line_refuses_plan_labels_without_a_planner_in_one_line(mocap_store, tmp_path):
    import os
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-m", "imitate.cli", "dagger", "--data", str(mocap_store), "--out",
                           str(tmp_path / "run"), "--expert", "pd", "--plan-labels", "2"], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=repo), timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "imitate: error: plan_labels needs an expert that plans (the search or guided expert); found PDExpert"]
    assert done.stdout == "" and not (tmp_path / "run").exists()
