"""The search expert on Ray workers: the same labels, stores and checkpoints as in-process."""

import os
import signal
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from imitate.config import EnvConfig
from imitate.errors import ConfigError
from imitate.experts.search import DAGGER_LABELS, SearchExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation

ray = pytest.importorskip("ray")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = replace(DAGGER_LABELS, candidates=6, horizon=4, planning_hz=150, nthread=1)  # cold, cheap


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _states(config, clip, n=5, steps=3, seed=0):
    """A simulation of n humanoids a few random-action steps from spread clip times."""
    sim = Simulation(config, n, nthread=1, clip=clip)
    sim.reset(np.arange(n), np.linspace(0.0, 0.9 * clip.duration_s, n))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        sim.step(rng.uniform(-0.3, 0.3, (n, 28)))
    return sim


@pytest.mark.parametrize("search, guided", [(SMALL, False), (replace(SMALL, warm_start=True), False), (SMALL, True)],
                         ids=["cold", "warm", "guided"])
def test_labels_are_the_same_on_any_number_of_workers(local_ray, synthetic_clip_path, search, guided):
    from imitate.distributed import RayExpert

    config = EnvConfig(clip=str(synthetic_clip_path))
    clip = load_clip(config.clip)
    sim = _states(config, clip)
    # guided: the search around servo targets of its own (here the reference's, shifted 0.05 rad)
    targets = clip.qpos(np.arange(40) / 30.0 + 1 / 30.0)[:, 7:] + 0.05 if guided else None
    local = SearchExpert(clip, config, search, nominal_targets=targets)
    expected = [local.label(sim)]
    sim.step(expected[0])
    expected.append(local.label(sim))  # a second decision: warm plans carried over
    for workers in (1, 2):
        remote = RayExpert(clip, config, search, workers=workers, nominal_targets=targets)
        sim2 = _states(config, clip)
        got = [remote.label(sim2)]
        sim2.step(got[0])
        got.append(remote.label(sim2))
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b)  # bit for bit
        assert remote.provenance() == local.provenance()
        remote.close()


def test_a_killed_worker_is_restarted_and_its_task_retried(local_ray, synthetic_clip_path):
    from imitate.distributed import RayExpert

    config = EnvConfig(clip=str(synthetic_clip_path))
    clip = load_clip(config.clip)
    sim = _states(config, clip)
    expected = SearchExpert(clip, config, SMALL).label(sim)
    remote = RayExpert(clip, config, SMALL, workers=2)
    ray.kill(remote._actors[1], no_restart=False)  # its process dies; Ray restarts it
    np.testing.assert_array_equal(remote.label(sim), expected)
    remote.close()


def test_a_worker_killed_by_its_pid_mid_round_leaves_the_round_exactly_as_in_process(local_ray, synthetic_clip_path,
                                                                                       tmp_path):
    """SIGKILL to a worker's process while its labels are in flight, in the middle of a DAgger
    round's collection: Ray restarts the actor and retries the task, and the round's labels and
    executed actions are those of the in-process run."""
    import signal

    from imitate.dagger import collect
    from imitate.distributed import RayExpert

    config = EnvConfig(clip=str(synthetic_clip_path), random_start=True)
    clip = load_clip(config.clip)
    runs = {}
    for name in ("local", "ray"):
        expert = SearchExpert(clip, config, SMALL) if name == "local" else RayExpert(clip, config, SMALL, workers=2)
        if name == "ray":
            calls, get = [], expert._ray.get

            def get_after_a_kill(refs, _get=get, _expert=expert, _calls=calls):
                _calls.append(1)
                if len(_calls) == 3:  # the third step's labels are being computed: kill worker 1
                    os.kill(_expert.pids[1], signal.SIGKILL)
                return _get(refs)

            expert._ray = type("Ray", (), {"get": staticmethod(get_after_a_kill)})()
        sim = Simulation(config, 3, nthread=1, clip=clip)
        policy = lambda obs: np.zeros((len(obs), 28))  # noqa: E731
        runs[name] = collect(sim, policy, expert, 0.5, 6, 0)
    assert calls == [1] * 6
    for a, b in zip(runs["local"], runs["ray"], strict=True):
        for field in ("expert_actions", "actions", "qpos"):
            np.testing.assert_array_equal(a[field], b[field])
    new_pids = [p for _, _, p in ray.get([a.identity.remote() for a in expert._actors])]
    assert new_pids[1] != expert.pids[1] and new_pids[0] == expert.pids[0]  # worker 1 was restarted


def test_workers_collecting_slices_of_a_round_give_the_in_process_episodes_even_after_a_kill(local_ray,
                                                                                           synthetic_clip_path):
    """RayExpert.collect: each worker collects its slice of the envs (its own simulation and
    expert, the learner sent once; the plans' states too); one worker is killed by its pid as the
    slices start."""
    import torch

    from imitate.dagger import collect
    from imitate.distributed import RayExpert
    from imitate.observation import OBS_DIM
    from imitate.policy import GaussianPolicy

    config = EnvConfig(clip=str(synthetic_clip_path), random_start=True)
    clip = load_clip(config.clip)
    torch.manual_seed(0)
    policy = GaussianPolicy(OBS_DIM, 28)
    search = replace(SMALL, warm_start=True)  # plans keyed by the envs' global numbers
    local = collect(Simulation(config, 5, nthread=1, clip=clip), policy.act, SearchExpert(clip, config, search),
                    0.5, 30, (3, 1), "segment", 4, action_noise=0.02, plan_labels=2)
    expert = RayExpert(clip, config, search, workers=2)
    wait = expert._ray.wait

    def wait_after_a_kill(refs, _wait=wait, **kw):
        if len(refs) == 2:  # the slices are out: kill worker 1
            os.kill(expert.pids[1], signal.SIGKILL)
        return _wait(refs, **kw)

    expert._ray = type("Ray", (), {"wait": staticmethod(wait_after_a_kill), "get": staticmethod(ray.get),
                                   "put": staticmethod(ray.put)})()
    remote = expert.collect(policy, config, 5, 0.5, 30, (3, 1), "segment", 4, 0.02, plan_labels=2)
    assert [e["env"] for e in remote] == [e["env"] for e in local] == sorted(e["env"] for e in local)
    assert [e["source"] for e in remote] == [e["source"] for e in local] and "plan" in [e["source"] for e in local]
    for a, b in zip(local, remote, strict=True):
        for field in ("obs", "expert_actions", "actions", "qpos", "qvel", "time_s", "reward", "terminated",
                      "truncated"):
            np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    new_pids = [p for _, _, p in ray.get([a.identity.remote() for a in expert._actors])]
    assert new_pids[1] != expert.pids[1]  # worker 1 was restarted, and its slice collected again


def test_a_worker_of_another_version_is_named(local_ray, synthetic_clip_path, monkeypatch):
    import imitate.distributed as distributed

    monkeypatch.setattr(distributed, "__version__", "0.0.0-driver")  # the driver's version differs
    config = EnvConfig(clip=str(synthetic_clip_path))
    with pytest.raises(ConfigError, match=r"the Ray worker on node [\d.]+ has imitate .*; this driver has 0.0.0"):
        distributed.RayExpert(load_clip(config.clip), config, SMALL, workers=1)


def test_a_worker_that_cannot_import_imitate_is_named(local_ray, synthetic_clip_path, monkeypatch):
    import imitate.distributed as distributed

    class NoImitate:  # defined here, so Ray ships it by value: on the worker its start fails as an import would
        def __init__(self, *args):
            raise ImportError("No module named 'imitate'")

        def identity(self):  # never reached
            return None

    monkeypatch.setattr(distributed, "_Worker", NoImitate)
    config = EnvConfig(clip=str(synthetic_clip_path))
    with pytest.raises(ConfigError, match=r"the Ray worker on node [\d.]+ could not start imitate's search expert "
                                          r"\(ImportError: No module named 'imitate'\): install imitate"):
        distributed.RayExpert(load_clip(config.clip), config, SMALL, workers=1)


def test_dagger_on_ray_writes_the_same_store_and_checkpoints(local_ray, synthetic_clip_path, tmp_path):
    import h5py
    import torch

    from imitate.dagger import DAggerConfig, run_dagger
    from imitate.dataset import BuildConfig, build_mocap_store
    from imitate.distributed import RayExpert
    from imitate.policy import load_checkpoint
    from imitate.sft import SFTConfig

    config = EnvConfig(clip=str(synthetic_clip_path))
    clip = load_clip(config.clip)
    fit = SFTConfig(epochs=2, threads=1)
    dagger = DAggerConfig(rounds=1, num_envs=2, steps_per_env=4, sft=fit, retrain=fit, eval_horizon_s=0.2)
    runs = {}
    for name, expert in (("local", SearchExpert(clip, config, SMALL)), ("ray", RayExpert(clip, config, SMALL,
                                                                                          workers=2))):
        store = tmp_path / f"{name}.h5"
        build_mocap_store(store, config, BuildConfig(offsets=1, copies=1, joint_noise_rad=(0.05,),
                                                     velocity_noise_rad_s=(0.5,)), expert=expert)
        run_dagger(tmp_path / f"{name}-run", store, dagger, expert=expert)
        runs[name] = store
    with h5py.File(runs["local"], "r") as a, h5py.File(runs["ray"], "r") as b:
        assert sorted(a["episodes"]) == sorted(b["episodes"])
        for eid in a["episodes"]:
            for field in ("expert_actions", "actions", "qpos", "obs"):
                np.testing.assert_array_equal(a[f"episodes/{eid}/{field}"][()], b[f"episodes/{eid}/{field}"][()])
    for k in (0, 1):
        pa, _, _ = load_checkpoint(tmp_path / "local-run" / f"round_{k:03d}.pt")
        pb, _, _ = load_checkpoint(tmp_path / "ray-run" / f"round_{k:03d}.pt")
        for (na, ta), (nb, tb) in zip(pa.state_dict().items(), pb.state_dict().items(), strict=True):
            assert na == nb and torch.equal(ta, tb), na


def test_without_the_flag_ray_is_never_imported(tmp_path, synthetic_clip_path):
    code = ("import sys; from imitate.cli import main; "
            f"main(['dataset', 'build', {str(synthetic_clip_path)!r}, '--out', {str(tmp_path / 's.h5')!r}, "
            "'--offsets', '1', '--copies', '1', '--expert', 'search', '--candidates', '4', '--horizon', '2', "
            "'--planning-hz', '150']); print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_ray_with_an_expert_that_needs_no_workers_is_one_line(tmp_path, synthetic_clip_path):
    done = subprocess.run([sys.executable, "-m", "imitate.cli", "dataset", "build", str(synthetic_clip_path),
                           "--out", str(tmp_path / "s.h5"), "--ray"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert done.returncode == 2 and "the pd expert needs no workers" in done.stderr




def test_the_tracking_expert_prepared_on_a_worker_is_the_one_prepared_in_process(local_ray, synthetic_clip_path,
                                                                                  tmp_path):
    """The preparation runs as a Ray task (on 2 threads there, 1 here); the driver writes the
    cache, which the next preparation loads without a task."""
    from imitate.distributed import prepare_on_ray
    from imitate.experts.reconstruct import ReconstructConfig
    from imitate.experts.tracking import TrackingConfig, TrackingExpert

    config = EnvConfig(clip=str(synthetic_clip_path))
    clip = load_clip(config.clip)
    small = TrackingConfig(reconstruct=ReconstructConfig(samples=12, elites=3, window_steps=2, lookahead_steps=1,
                                                         seed=1, nthread=1), horizon_s=0.2)
    local = TrackingExpert.prepare(clip, config, small, cache=tmp_path / "local")
    said = []
    remote = prepare_on_ray(clip, config, small, cpus=2, cache=tmp_path / "ray", say=said.append)
    assert len(said) == 1 and "on a Ray worker (2 CPUs)" in said[0]
    for field in ("states", "ctrl", "a", "b"):
        np.testing.assert_array_equal(getattr(local, field), getattr(remote, field), err_msg=field)
    assert [p.name for p in (tmp_path / "ray").iterdir()] == [p.name for p in (tmp_path / "local").iterdir()]
    again = prepare_on_ray(clip, config, small, cpus=2, cache=tmp_path / "ray", say=said.append)
    assert len(said) == 1 and np.array_equal(again.ctrl, local.ctrl)  # from the cache: no task


def test_zoo_on_ray_equals_the_in_process_zoo(local_ray, tmp_path, tiny):
    """Each clip's learn as a Ray task: the same policies and table as one after another here."""
    from dataclasses import replace as copy_with

    import torch
    from conftest import synthetic_frames, write_clip

    import imitate
    from imitate.learning import zoo
    from imitate.policy import load_checkpoint

    clips = [str(write_clip(tmp_path / f"clip{seed}.txt", synthetic_frames(seed=seed))) for seed in (1, 2)]
    recipe = tiny(imitate.RECIPES["search"])
    here = zoo(clips, tmp_path / "here", config=recipe, video_seconds=0)
    there = zoo(clips, tmp_path / "ray", config=recipe, video_seconds=0, address="auto", cpus_per_clip=1)
    assert [copy_with(r, minutes=None) for r in there] == [copy_with(r, minutes=None) for r in here]
    for row in here:  # the same weights (the files also name their folders)
        ours, theirs = (load_checkpoint(tmp_path / side / row.clip / "policy.pt")[0].state_dict()
                        for side in ("here", "ray"))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert (tmp_path / "ray" / "zoo.csv").exists()


def test_learn_with_its_labels_on_ray_equals_learn_in_process(local_ray, tmp_path, synthetic_clip_path, tiny):
    """`imitate learn --ray`: the recipe's search on 2 workers; the same rounds and policy."""
    import torch

    import imitate
    from imitate.distributed import RayExpert
    from imitate.policy import load_checkpoint

    recipe = tiny(imitate.RECIPES["search"])
    here = imitate.learn(str(synthetic_clip_path), tmp_path / "here", config=recipe, video_seconds=0)
    there = imitate.learn(str(synthetic_clip_path), tmp_path / "ray", config=recipe, video_seconds=0,
                          expert_factory=lambda clip, env: RayExpert(clip, env, recipe.search, workers=2))
    strip = ("sft_seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in there.summary["rounds"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in here.summary["rounds"]]
    ours, theirs = (load_checkpoint(r.policy)[0].state_dict() for r in (here, there))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
