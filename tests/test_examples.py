"""The shipped examples run as written, and a user's own expert plugs into the public API."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np

import imitate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dagger_example_runs(tmp_path, synthetic_clip_path):
    done = subprocess.run([sys.executable, os.path.join(REPO, "examples", "dagger.py"), "--clip",
                           str(synthetic_clip_path), "--rounds", "1", "--steps", "10", "--epochs", "2",
                           "--video-seconds", "0", "--out", str(tmp_path / "ex")],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert done.returncode == 0, done.stderr
    assert "round 1: normalised return" in done.stdout and "survival" in done.stdout
    assert (tmp_path / "ex" / "run" / "round_001.pt").exists()
    assert (tmp_path / "ex" / "run" / "learning_curve.csv").exists()


class NudgedPD:
    """A user's own expert: not a subclass of anything of ours, only label(sim) and provenance()."""

    def __init__(self, clip, action_space):
        from imitate.experts.pd import PDExpert

        self.pd = PDExpert(clip, action_space)

    def label(self, sim):
        return np.clip(self.pd(sim.qpos, sim.qvel, sim.ref_time_s) + 0.05, -1.0, 1.0)

    def provenance(self):
        return {"kind": "nudged-pd", "nudge": 0.05}


def test_a_users_own_expert_plugs_in(tmp_path, synthetic_clip_path):
    config = imitate.EnvConfig(clip=str(synthetic_clip_path))
    clip = imitate.load_clip(config.clip)
    expert = NudgedPD(clip, config.action_space)
    assert isinstance(expert, imitate.Expert)  # the protocol, structurally
    store = tmp_path / "s.h5"
    imitate.build_mocap_store(store, config, imitate.BuildConfig(offsets=2, copies=1), expert=expert)
    fit = imitate.SFTConfig(epochs=2, threads=1)
    imitate.run_dagger(tmp_path / "run", store, imitate.DAggerConfig(rounds=1, num_envs=2, steps_per_env=10,
                                                                     sft=fit, retrain=fit, eval_horizon_s=0.5),
                       expert=expert)
    from imitate.experts.pd import PDExpert

    pd = PDExpert(clip, config.action_space)
    with h5py.File(store, "r") as f:  # plain h5py: every stored label is the user's expert's
        for g in f["episodes"].values():
            want = np.clip(pd(g["qpos"][()], g["qvel"][()], g["time_s"][()]) + 0.05, -1, 1)
            np.testing.assert_allclose(g["expert_actions"][()], want, atol=1e-6)
            assert json.loads(g.attrs["labelled_by"])["kind"] == "nudged-pd"
        assert {g.attrs["source"] for g in f["episodes"].values()} == {"mocap", "dagger"}


def test_the_readme_python_example_runs(tmp_path, synthetic_clip_path):
    """The README's "From Python" block, as written but for its sizes (1 round of 10 steps, 2
    epochs), its clip (a synthetic one) and its folder."""
    text = open(os.path.join(REPO, "README.md")).read()
    code = text.split("## From Python")[1].split("```python")[1].split("```")[0]
    for old, new in (("rounds=3, steps_per_env=100", "rounds=1, steps_per_env=10"), ("epochs=30", "epochs=2"),
                     ("runs/example", str(tmp_path / "example")), ('"walk"', repr(str(synthetic_clip_path)))):
        assert old in code, old  # the substitutions still match the README
        code = code.replace(old, new)
    import ctypes.util

    if not ctypes.util.find_library("OSMesa"):  # no offscreen OpenGL here: the video line cannot run
        code = "\n".join(line for line in code.splitlines() if "render_video" not in line)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert done.returncode == 0, done.stderr
    mean_return, survival = map(float, done.stdout.split())
    assert 0 <= mean_return <= 1 and survival > 0
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert again.returncode == 0, again.stderr  # run again, it resumes: the same figures, nothing rebuilt
    assert again.stdout == done.stdout


def test_no_submodule_hides_a_public_name_once_imported():
    """Importing imitate.X sets the package's attribute X to the module: a module named like one
    of the names the package exports would replace that name for every script after it."""
    import importlib
    import pkgutil
    import types

    import imitate

    for info in pkgutil.walk_packages(imitate.__path__, "imitate."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    hidden = [name for name in imitate.__all__ if isinstance(getattr(imitate, name), types.ModuleType)]
    assert hidden == []
