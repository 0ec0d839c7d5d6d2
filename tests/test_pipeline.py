"""run_pipeline on a tiny configuration: what it writes, what it reports, how it resumes, what it
refuses.  (tests/test_cli.py runs `imitate pipeline --expert pd` itself, end to end; the default
route, the search recipe through learn, is tests/test_learn.py's.)

Independent references: the store read with plain h5py, state.json and log.csv read as JSON
and CSV, the checkpoints loaded with load_checkpoint, every file's mtime before and after a
resumed call.
"""

import csv
import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import synthetic_frames, write_clip

from imitate.config import EnvConfig
from imitate.dagger import DAggerConfig
from imitate.dataset import BuildConfig
from imitate.errors import ConfigError
from imitate.observation import OBS_DIM
from imitate.pipeline import STAGES, PipelineConfig, run_pipeline
from imitate.policy import load_checkpoint
from imitate.sft import SFTConfig
from imitate.trpo import TRPOConfig

BUILD = BuildConfig(offsets=2, copies=1)  # 2 clean passes + 1 per noise level (2 levels): 4 mocap episodes
DAGGER = DAggerConfig(rounds=2, num_envs=2, steps_per_env=20, sft=SFTConfig(epochs=3), retrain=SFTConfig(epochs=2),
                      eval_episodes=1, eval_horizon_s=0.5)
TRPO = TRPOConfig(samples=128, num_envs=2, steps_per_env=32, critic_warmup_iters=1, checkpoint_every=1)  # 2 iterations


class Recorder:
    """Every callback's arguments, in order."""

    def __init__(self):
        self.stages, self.rounds, self.iterations, self.notes = [], [], [], []

    def run(self, config, run_dir):
        return run_pipeline(config, run_dir, on_stage=self.stages.append, on_round=self.rounds.append,
                            on_iteration=self.iterations.append, on_progress=self.notes.append)


def mtimes(run_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.suffix != ".lock"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny pipeline run: (config, run dir, result, recorder)."""
    path = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)  # MuJoCo's log file goes here
        clip = write_clip(path / "synthetic.txt", synthetic_frames())
        config = PipelineConfig(clip=str(clip), build=BUILD, dagger=DAGGER, trpo=TRPO, eval_episodes=2,
                                eval_horizon_s=0.5)
        recorder = Recorder()
        result = recorder.run(config, path / "run")
        yield config, path / "run", result, recorder


def test_the_store_holds_the_mocap_round_and_every_dagger_round(run):
    config, run_dir, result, _ = run
    assert result.store == run_dir / "synthetic.h5" and result.clip == "synthetic"
    with h5py.File(result.store, "r") as f:
        assert json.loads(f.attrs["rounds"]) == [0, 1, 2]
        episodes = [dict(g.attrs) for g in f["episodes"].values()]
    mocap = [e for e in episodes if e["round"] == 0]
    assert len(mocap) == 4 and {e["source"] for e in mocap} == {"mocap"}
    for k in (1, 2):
        mine = [e for e in episodes if e["round"] == k]
        assert {e["source"] for e in mine} == {"dagger"}
        assert sum(int(e["length"]) for e in mine) == 2 * 20  # num_envs x steps_per_env


def test_every_round_and_the_trpo_policy_are_checkpoints_of_the_clip(run):
    config, run_dir, result, recorder = run
    state = json.loads((run_dir / "state.json").read_text())
    assert [r["round"] for r in state["rounds"]] == [0, 1, 2] == [r.round for r in result.rounds]
    assert [r.round for r in recorder.rounds] == [0, 1, 2]
    env = EnvConfig(clip=config.clip)
    obs = np.zeros((1, OBS_DIM), np.float32)
    for k in range(3):
        policy, _, meta = load_checkpoint(run_dir / f"round_{k:03d}.pt", env)
        assert meta["round"] == k and policy.act(obs).shape == (1, 28)
    trpo_policy = run_dir / "trpo" / "policy.pt"
    expected = {"SFT (round 0)": run_dir / "round_000.pt", "DAgger (round 2)": run_dir / "round_002.pt",
                "+ TRPO": trpo_policy}
    returns = {r["round"]: r["evaluation"]["normalised_return"]["mean"] for r in state["rounds"][1:]}
    best = max(returns, key=returns.get)  # the DAgger round that evaluated best, when it is not the last
    if best != 2:
        expected[f"DAgger (best: round {best})"] = run_dir / f"round_{best:03d}.pt"
    assert result.checkpoints == expected
    _, _, meta = load_checkpoint(trpo_policy, env)
    assert (meta["iteration"], meta["samples"]) == (2, 128)
    # TRPO starts from the round DAgger keeps (the best by its own evaluation), not the last
    # (here they differ, so the assertion tells the two apart)
    assert best != 2
    assert json.loads((run_dir / "trpo" / "config.json").read_text())["init"] == str(run_dir / f"round_{best:03d}.pt")
    rows = list(csv.DictReader((run_dir / "trpo" / "log.csv").open()))
    assert [int(r["samples"]) for r in rows] == [64, 128] == [e.samples for e in recorder.iterations]


def test_stages_are_reported_in_order_and_every_controller_is_evaluated(run):
    config, run_dir, result, recorder = run
    assert [s.name for s in recorder.stages] == [s for s in STAGES if s != "expert"]  # pd: no expert check
    assert [s.path for s in recorder.stages] == [result.store, result.store, run_dir / "trpo", run_dir]
    assert not any(s.resumed for s in recorder.stages)
    assert "round 1: collecting with beta 1.000" in recorder.notes
    assert list(result.evaluation) == ["PD expert", *result.checkpoints]
    assert list(result.checkpoints)[:2] == ["SFT (round 0)", "DAgger (round 2)"] and "+ TRPO" in result.checkpoints
    for ev in result.evaluation.values():
        assert ev.episodes == 2 and ev.horizon_s == 0.5
        assert 0.0 <= ev.normalised_return.mean <= 1.0 and 0.0 <= ev.survival_s.mean <= 0.5


def test_without_trpo_the_last_dagger_policy_is_the_last_evaluated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip = write_clip(tmp_path / "synthetic.txt", synthetic_frames())
    config = PipelineConfig(clip=clip, build=BUILD, dagger=replace(DAGGER, rounds=1), trpo=None, eval_episodes=1,
                            eval_horizon_s=0.5)
    recorder = Recorder()
    result = recorder.run(config, tmp_path / "run")
    assert [s.name for s in recorder.stages] == ["store", "dagger", "evaluation"]
    assert list(result.evaluation) == ["PD expert", "SFT (round 0)", "DAgger (round 1)"]
    assert not (tmp_path / "run" / "trpo").exists() and result.iterations == []


@pytest.mark.parametrize("change, words", [
    ({"eval_episodes": 0}, "eval_episodes must be an integer >= 1"),
    ({"eval_horizon_s": 0.0}, "eval_horizon_s must be > 0 or None"),
    ({"eval_init_noise_rad": -0.1}, "eval_init_noise_rad must be >= 0"),
    ({"action_space": "velocity"}, "action_space must be one of"),
    ({"clip": ""}, "clip must be a clip name or path"),
    ({"build": {"offsets": 2}}, "build must be a BuildConfig; found dict"),
    ({"trpo": 8192}, "trpo must be a TRPOConfig or None; found int"),
])
def test_invalid_config_is_refused(change, words):
    with pytest.raises(ConfigError, match=words):
        PipelineConfig(**change)


def test_a_store_of_another_action_space_is_refused_before_anything_runs(run):
    config, run_dir, _, _ = run
    before = mtimes(run_dir)
    with pytest.raises(ConfigError, match=r"synthetic\.h5: built for another env configuration \(action_space: "
                                          r"store 'pd_target', requested 'torque'\)"):
        Recorder().run(replace(config, action_space="torque"), run_dir)
    assert mtimes(run_dir) == before


def test_a_second_call_resumes_without_recomputing(run):
    config, run_dir, first, _ = run
    before = mtimes(run_dir)
    again = Recorder()
    result = again.run(config, run_dir)
    assert mtimes(run_dir) == before  # no store append, no checkpoint, no state or log written
    assert [(s.name, s.resumed) for s in again.stages] == [("store", True), ("dagger", True), ("trpo", True),
                                                           ("evaluation", False)]
    assert again.rounds == [] and again.iterations == [] and result.iterations == []
    assert again.notes == ["resuming TRPO at iteration 2 (128 samples)"]
    assert result.rounds == first.rounds and result.checkpoints == first.checkpoints
    assert result.evaluation == first.evaluation  # the same policies, the same seeded evaluation


def test_the_search_recipe_labels_with_the_search_expert(tmp_path):
    """RECIPES["search"], made tiny: the store and every round are labelled by the search expert
    (its settings recorded; its plans' states too), the learner is residual, there is no TRPO
    stage and no PD-expert row."""
    from imitate.experts.search import DAGGER_LABELS
    from imitate.pipeline import RECIPES

    clip = write_clip(tmp_path / "synthetic.txt", synthetic_frames())
    recipe = RECIPES["search"]
    assert recipe.expert == "search" and recipe.trpo is None and recipe.dagger.policy.residual
    assert recipe.search == replace(DAGGER_LABELS, planning_hz=150.0, candidates=64) and recipe.dagger.rounds == 12
    assert recipe.dagger.plan_labels == 2 and recipe.dagger.fits == 4
    small = replace(recipe, clip=str(clip), build=BuildConfig(offsets=1, copies=1, joint_noise_rad=(0.05,),
                                                            velocity_noise_rad_s=(0.5,)),
                    search=replace(recipe.search, candidates=4, horizon=4),
                    dagger=replace(recipe.dagger, rounds=1, num_envs=2, steps_per_env=5, eval_episodes=1,
                                   eval_horizon_s=0.3, sft=SFTConfig(epochs=2, threads=1),
                                   retrain=SFTConfig(epochs=1, threads=1)),
                    eval_episodes=1, eval_horizon_s=0.3)
    result = run_pipeline(small, tmp_path / "run")
    with h5py.File(result.store, "r") as f:
        kinds = {json.loads(g.attrs["labelled_by"])["kind"] for g in f["episodes"].values()}
        assert kinds == {"search"}
        assert {g.attrs["source"] for g in f["episodes"].values()} == {"mocap", "dagger", "plan"}
    assert "PD expert" not in result.evaluation and "+ TRPO" not in result.checkpoints
    policy, _, _ = load_checkpoint(result.best)
    assert policy.config.residual and result.best.name == "round_001.pt"
