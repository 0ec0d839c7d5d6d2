"""scripts/bench_dagger_vs_imitation.py compares at equal work: both sides' Adam steps and samples
per round come from one plan, and imitate's side really takes the planned steps.

Runs without the `imitation` library.  Independent references: the step counts written out by
hand (epochs x epoch samples / batch size), and Adam steps counted by wrapping
``torch.optim.Adam.step`` here (not the script's own counter).
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imitate.policy import GaussianPolicy, PolicyConfig
from imitate.sft import fit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_dagger_vs_imitation as bench  # noqa: E402 (scripts/ is not a package)


@pytest.mark.parametrize("options, steps_per_env, adam_steps", [
    ((1200, 8, 30, 512), 150, 60),  # the documented run: 30 epochs x 2 batches of 256
    ((1200, 8, 30, 256), 150, 30),
    ((96, 4, 3, 768), 24, 9),
    ((8, 8, 1, 256), 1, 1),
])
def test_the_plan_is_the_hand_computed_work(options, steps_per_env, adam_steps):
    samples, envs, epochs, epoch_samples = options
    plan = bench.work_plan(samples, envs, epochs, epoch_samples)
    assert (plan.steps_per_env, plan.samples_per_round, plan.batch_size) == (steps_per_env, samples, 256)
    assert plan.adam_steps == adam_steps
    # each side's settings carry the same figure: imitation's BC by batches, imitate's SFT by epochs
    theirs = bench.imitation_bc_train_kwargs(plan)
    assert theirs["n_batches"] == adam_steps and "n_epochs" not in theirs
    assert bench.imitation_bc_train_kwargs(plan, 400)["n_batches"] == 400  # round 0: imitate's count
    mine = bench.imitate_retrain_config(plan, threads=1)
    assert mine.epochs * mine.epoch_samples // mine.batch_size == adam_steps
    assert mine.patience >= mine.epochs  # no early stop: every planned epoch runs


@pytest.mark.parametrize("options", [(1200, 8, 30, 400), (1200, 7, 30, 512), (1200, 8, 0, 512)])
def test_a_plan_that_cannot_be_equal_work_is_refused(options):
    with pytest.raises(ValueError):
        bench.work_plan(*options)


def test_the_command_line_refuses_it_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(["--epoch-samples", "400"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "multiple of the batch size" in error and "Traceback" not in error


def test_imitate_takes_the_planned_adam_steps(monkeypatch):
    """A tiny fit with the plan's retraining settings: Adam steps counted by a wrapper of
    Adam.step equal epochs x epoch_samples / 256, here 3 x 512 / 256 = 6, though the train split
    (700 samples) is no multiple of anything in the plan and the validation loss is noise."""
    plan = bench.work_plan(samples_per_round=16, num_envs=8, epochs=3, epoch_samples=512)
    taken = []
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch wraps Adam.step with its hooks on first use
    real_step = torch.optim.Adam.step  # so this one runs the step hooks, whichever test made an Adam first

    def counted(self, *a, **kw):
        taken.append(1)
        return real_step(self, *a, **kw)

    counted.hooked = True  # torch's mark of a wrapped step: not wrapped (and the hooks run) a second time
    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    rng = np.random.default_rng(0)
    data = {"obs": rng.normal(size=(750, 5)).astype(np.float32),
            "expert_actions": rng.uniform(-1, 1, size=(750, 2)).astype(np.float32)}
    train = {k: v[:700] for k, v in data.items()}
    valid = {k: v[700:] for k, v in data.items()}
    policy = GaussianPolicy(5, 2, PolicyConfig(hidden=(8,)))
    with bench.counting_optimiser_steps() as counted_by_script:
        result = fit(policy, train, valid, bench.imitate_retrain_config(plan, threads=1))
    assert len(taken) == 6 and result.epochs_run == 3
    assert counted_by_script[0] == 6  # the script's counter, which both sides report, agrees


def round_of(side, adam_steps):
    return {"round": 1, "adam_steps": adam_steps, "side": side}


def test_a_side_that_drifts_from_the_plan_stops_the_report():
    plan = bench.work_plan(1200, 8, 30, 512)
    fine = {name: {"rounds": [round_of(name, 60)], "round0": {"adam_steps": 400}} for name in ("imitate", "imitation")}
    bench.check_work(fine, plan)
    drifted = {**fine, "imitation": {"rounds": [round_of("imitation", 61)], "round0": {"adam_steps": 400}}}
    with pytest.raises(SystemExit, match="61 Adam steps"):
        bench.check_work(drifted, plan)
    round0 = {**fine, "imitate": {"rounds": [round_of("imitate", 60)], "round0": {"adam_steps": 399}}}
    with pytest.raises(SystemExit, match="round 0"):
        bench.check_work(round0, plan)


def test_equal_work_scales_collection_to_the_plan_and_leaves_evaluation_out():
    """imitation collected 1,500 samples where the plan says 1,200: its collection and labelling
    count 4/5, its training whole; imitate's evaluation does not count."""
    r = {"samples": 1500, "wall": {"collect": 10.0, "label": 5.0, "train": 2.0, "eval": 7.0, "other": 1.0}}
    assert bench.equal_work(r, 1200, "wall") == pytest.approx(15.0 * 0.8 + 2.0 + 1.0)
    assert bench.equal_work(r, 1200, "wall", ("label", "train", "other")) == pytest.approx(5.0 * 0.8 + 2.0 + 1.0)


def test_a_dagger_round_of_the_benchmarks_imitate_side_takes_the_planned_steps(tmp_path, monkeypatch):
    """The same through run_dagger, as the benchmark's imitate side runs it (DAggerTrainer.fit
    replaces seed and last_rounds in the retrain config): on a synthetic clip's store, round 1
    takes 3 epochs x 16 samples / batches of 8 = 6 Adam steps, counted by wrapping Adam.step."""
    from conftest import synthetic_frames, write_clip

    from imitate.config import EnvConfig
    from imitate.dagger import DAggerConfig, run_dagger
    from imitate.dataset import BuildConfig, build_mocap_store
    from imitate.sft import SFTConfig

    monkeypatch.chdir(tmp_path)  # MuJoCo's warning log
    clip = write_clip(tmp_path / "synthetic.txt", synthetic_frames())
    store = tmp_path / "store.h5"
    build_mocap_store(store, EnvConfig(clip=str(clip)), BuildConfig(offsets=2, copies=1))
    plan = bench.work_plan(samples_per_round=8, num_envs=2, epochs=3, epoch_samples=16, batch_size=8)
    taken, at_round_1 = [], []
    real_step = torch.optim.Adam.step

    def counted(self, *a, **kw):
        taken.append(1)
        return real_step(self, *a, **kw)

    def on_progress(message):
        if message.startswith("round 1: retraining"):
            at_round_1.append(len(taken))

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    config = DAggerConfig(rounds=1, num_envs=plan.num_envs, steps_per_env=plan.steps_per_env,
                          sft=SFTConfig(epochs=1, threads=1), retrain=bench.imitate_retrain_config(plan, threads=1),
                          eval_episodes=1, eval_horizon_s=0.2)
    results = run_dagger(tmp_path / "run", store, config, on_progress=on_progress)
    assert results[1].new_steps == 8
    assert len(taken) - at_round_1[0] == 6
