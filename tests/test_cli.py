"""The imitate command, run as a user would."""

import json
import os
import subprocess
import sys

import pytest

from imitate.cli import main


def test_motions_json_lists_the_classic_clips(capsys):
    pytest.importorskip("pybullet_data")
    assert main(["motions", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert len([r for r in rows.values() if r["source"] == "pybullet"]) == 15
    walk = rows["walk"]
    raw = json.loads(open(walk["path"]).read())
    assert walk["frames"] == len(raw["Frames"]) == 39
    assert walk["loop"] is True and abs(walk["duration_s"] - 38 * raw["Frames"][0][0]) < 1e-3


def test_track_json_reports_the_metrics(capsys, synthetic_clip_path):
    assert main(["track", "--clip", str(synthetic_clip_path), "--seconds", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for result in out.values():
        for key in ("normalised_return", "survival_s", "joint_error_deg", "end_effector_error_cm"):
            assert set(result[key]) == {"mean", "std"}
        assert result["horizon_s"] == 0.5


def test_bad_clip_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text('{"Loop": "wrap", "Frames": [[1, 2, 3]]}')
    assert main(["track", "--clip", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "at least 2 frames" in err and "Traceback" not in err


@pytest.mark.slow
def test_main_job_runs_end_to_end(tmp_path):
    """The main job's teaching route (--expert pd), small: store, SFT, one DAgger round, TRPO,
    evaluation tables; then the same command resumes from the run folder without collecting again."""
    pytest.importorskip("pybullet_data")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "imitate.cli", "pipeline", "--expert", "pd", "--rounds", "1", "--episodes", "1",
           "--trpo-samples", "1024", "--out", str(run)]
    env = {**os.environ, "COLUMNS": "200"}  # wide tables: no header wraps
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    for words in ("DAgger rounds", "PD expert", "SFT (round 0)", "DAgger (round 1)", "+ TRPO", "normalised return"):
        assert words in proc.stdout
    state = json.loads((run / "state.json").read_text())
    assert [r["round"] for r in state["rounds"]] == [0, 1]
    assert (run / "round_001.pt").is_file() and (run / "walk.h5").is_file() and (run / "trpo" / "policy.pt").is_file()
    assert (run / "best.mp4").is_file() or "no video" in proc.stdout  # the best round beside its reference
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0 and "resuming" in again.stdout and "collecting" not in again.stdout


def test_search_options_reach_the_search_expert(synthetic_clip_path):
    from imitate.cli import _make_expert, build_parser
    from imitate.config import EnvConfig
    from imitate.motion import load_clip

    args = build_parser().parse_args(["dagger", "--data", "x.h5", "--out", "run", "--expert", "search",
                                      "--candidates", "12", "--horizon", "9", "--search-noise", "0.05",
                                      "--search-label", "mppi", "--search-cold", "--search-knots", "3",
                                      "--search-noise-decay", "0.5", "--seed", "7",
                                      "--search-temperature", "0.3"])
    config = EnvConfig(clip=str(synthetic_clip_path))
    cfg = _make_expert(args.expert, load_clip(synthetic_clip_path), config, args).config
    assert (cfg.candidates, cfg.horizon, cfg.noise_rad, cfg.label, cfg.warm_start, cfg.knots, cfg.noise_decay,
            cfg.seed, cfg.temperature) == (12, 9, 0.05, "mppi", False, 3, 0.5, 7, 0.3)


def test_dagger_options_reach_the_dagger_config():
    from imitate.cli import _dagger_config, build_parser

    args = build_parser().parse_args(["dagger", "--data", "x.h5", "--out", "run", "--collect-noise", "0.05",
                                      "--steps", "40", "--num-envs", "3", "--residual"])
    cfg = _dagger_config(args)
    assert (cfg.collect_noise, cfg.steps_per_env, cfg.num_envs, cfg.policy.residual) == (0.05, 40, 3, True)
    assert _dagger_config(build_parser().parse_args(["dagger", "--data", "x.h5", "--out", "r"])).collect_noise == 0


def test_documented_dagger_search_options_are_the_named_recipe(synthetic_clip_path):
    from imitate.cli import _make_expert, build_parser
    from imitate.config import EnvConfig
    from imitate.experts.search import DAGGER_LABELS, SearchConfig
    from imitate.motion import load_clip

    args = build_parser().parse_args(["dagger", "--data", "x.h5", "--out", "run", "--expert", "search",
                                      "--search-label", "mppi", "--search-cold", "--search-knots", "4",
                                      "--search-temperature", "0.3"])
    cfg = _make_expert(args.expert, load_clip(synthetic_clip_path), EnvConfig(clip=str(synthetic_clip_path)),
                       args).config
    assert cfg == DAGGER_LABELS
    assert (cfg.warm_start, cfg.label, cfg.knots, cfg.temperature) == (False, "mppi", 4, 0.3)
    assert cfg != SearchConfig()


def test_bad_search_option_is_one_clear_error(synthetic_clip_path, capsys):
    assert main(["evaluate", "--expert", "search", "--clip", str(synthetic_clip_path), "--search-knots", "99",
                 "--episodes", "1",
                 "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "knots" in err and "99" in err and "Traceback" not in err


def test_dagger_names_the_last_and_the_best_round(tmp_path, synthetic_clip_path, capsys):
    store, run = tmp_path / "s.h5", tmp_path / "run"
    assert main(["dataset", "build", str(synthetic_clip_path), "--out", str(store), "--offsets", "1",
                 "--copies", "0"]) == 0
    assert main(["dagger", "--data", str(store), "--out", str(run), "--rounds", "1", "--steps", "4", "--num-envs", "2",
                 "--sft-epochs", "2", "--epochs", "2", "--eval-seconds", "0.2"]) == 0
    out = "".join(capsys.readouterr().out.split())  # rich may fold long paths: compare without whitespace
    state = json.loads((run / "state.json").read_text())
    best = max(state["rounds"], key=lambda r: r["evaluation"]["normalised_return"]["mean"])
    assert f"lastpolicy:{run / 'round_001.pt'};" in out
    assert f"best:{run / best['checkpoint']}(round{best['round']}," in out


def test_evaluate_the_best_expert_prepares_it_once_then_reads_the_cache(tmp_path, capsys, monkeypatch):
    """`imitate evaluate --expert best` on a user's short clip: prepared into $IMITATE_CACHE on
    first use, read from there the second time (the same figures)."""
    from conftest import synthetic_frames, write_clip

    clip = write_clip(tmp_path / "hop.txt", synthetic_frames(num_frames=5), loop="none")  # 4 control steps
    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))
    runs = []
    for _ in range(2):
        assert main(["evaluate", "--expert", "best", "--clip", str(clip), "--episodes", "2", "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert len(list((tmp_path / "cache").glob("tracking-hop-*.npz"))) == 1
    assert runs[0] == runs[1]
    assert runs[0]["horizon_s"] == pytest.approx(4 / 30)


def test_piped_tables_are_not_cut_at_80_columns():
    pytest.importorskip("pybullet_data")
    out = subprocess.run([sys.executable, "-m", "imitate.cli", "motions"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": ""}, check=True).stdout
    assert "getup_facedown" in out and "distance / cycle [m]" in out and "…" not in out


def test_a_clip_the_tracking_expert_cannot_perform_is_said_in_one_line(tmp_path, capsys, monkeypatch):
    """A reference that stands, then flies up at 18 m/s: the evaluation runs (the PD expert's
    labels past the reconstructed part) and stderr says how far the trajectory reaches."""
    from conftest import synthetic_frames, write_clip

    frames = synthetic_frames(num_frames=7)
    for k, f in enumerate(frames):
        f[2] = 0.85 + 0.6 * max(k - 2, 0)
    clip = write_clip(tmp_path / "fly.txt", frames, loop="none")
    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))
    from imitate.experts import tracking
    from imitate.experts.reconstruct import ReconstructConfig

    small = tracking.TrackingConfig(reconstruct=ReconstructConfig(samples=20, elites=4, max_rewinds=2))
    monkeypatch.setattr(tracking, "TrackingConfig", lambda: small)  # the command's defaults, smaller
    assert main(["evaluate", "--expert", "best", "--clip", str(clip), "--episodes", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["episodes"] == 1
    assert "performs 'fly' for" in err and "PD expert" in err and "Traceback" not in err


def test_ctrl_c_is_one_line_not_a_traceback(monkeypatch, capsys):
    import imitate.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_motions", interrupted)
    assert cli.main(["motions"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err


def _imitate(*argv, cwd=None):
    """The command as a user runs it: a subprocess; (exit status, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-m", "imitate.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)
    return done.returncode, done.stdout, done.stderr


def test_outputs_are_checked_before_the_work_and_never_overwritten_silently(tmp_path, synthetic_clip_path):
    store = tmp_path / "s.h5"
    assert _imitate("dataset", "build", synthetic_clip_path, "--out", store, "--offsets", "2", "--copies", "1")[0] == 0
    # an existing output: refused at once, before labelling (the search expert would take minutes)
    rc, out, err = _imitate("dataset", "build", synthetic_clip_path, "--out", store, "--expert", "search")
    assert rc == 2 and "already exists" in err and "labelling" not in out + err and "Traceback" not in err
    rc, _, err = _imitate("dataset", "build", synthetic_clip_path, "--out", tmp_path, "--overwrite")
    assert rc == 2 and "found a directory" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left
    ckpt = tmp_path / "p.pt"
    assert _imitate("sft", "--data", store, "--out", ckpt, "--epochs", "1", "--hidden", "16")[0] == 0
    before = ckpt.read_bytes()
    rc, out, err = _imitate("sft", "--data", store, "--out", ckpt, "--epochs", "1", "--hidden", "16")
    assert rc == 2 and "already exists (pass --overwrite" in err and ckpt.read_bytes() == before
    assert _imitate("sft", "--data", store, "--out", ckpt, "--epochs", "1", "--hidden", "16", "--overwrite")[0] == 0


@pytest.mark.parametrize("kind, words", [("store", "found an HDF5 file"), ("text", "found a file of another kind"),
                                         ("folder", "found a directory")])
def test_a_wrong_file_given_as_a_checkpoint_is_one_line(tmp_path, synthetic_clip_path, kind, words):
    path = {"store": tmp_path / "s.h5", "text": tmp_path / "notes.txt", "folder": tmp_path}[kind]
    if kind == "store":
        assert _imitate("dataset", "build", synthetic_clip_path, "--out", path, "--offsets", "2")[0] == 0
    elif kind == "text":
        path.write_text("hello\n")
    rc, _, err = _imitate("evaluate", path)
    assert rc == 2 and words in err and err.count("\n") == 1
    assert "weights_only" not in err and "KeyError" not in err and "Traceback" not in err


def test_bad_options_are_refused_before_any_work(tmp_path, synthetic_clip_path):
    """Each refused in one line naming the flag, with no table printed and no run folder made."""
    store = tmp_path / "s.h5"
    assert _imitate("dataset", "build", synthetic_clip_path, "--out", store, "--offsets", "2", "--copies", "1")[0] == 0
    run = tmp_path / "run"
    cases = [(("dagger", "--data", store, "--out", run, "--rounds", "0"), "--rounds must be >= 1; found 0"),
             (("dagger", "--data", store, "--out", run, "--num-envs", "0"), "--num-envs must be >= 1"),
             (("dagger", "--data", store, "--out", run, "--beta", "exponential:2"), "--beta: beta schedule"),
             (("dagger", "--data", store, "--out", run, "--init", tmp_path / "none.pt"), "no such checkpoint"),
             (("pipeline", "--trpo-samples", "-5", "--out", run), "--trpo-samples must be >= 0; found -5"),
             (("evaluate", "--expert", "pd", "--clip", synthetic_clip_path, "--init-noise", "-1"),
              "--init-noise must be >= 0"),
             (("evaluate", "--expert", "pd", "--clip", "punch", "--seconds", "10"),
              "--seconds 10 is past the end of punch"),
             (("sft", "--data", store, "--out", run, "--epochs", "0"), "--epochs must be >= 1; found 0"),
             (("sft", "--data", store, "--out", run, "--lr", "-1"), "--lr must be > 0; found -1.0"),
             (("trpo", "--samples", "0", "--out", run), "--samples must be >= 1; found 0"),
             (("trpo", "--max-kl", "-1", "--out", run), "--max-kl must be > 0"),
             (("dataset", "build", synthetic_clip_path, "--out", run, "--offsets", "0"), "--offsets must be >= 1")]
    for argv, words in cases:
        rc, out, err = _imitate(*argv)
        assert rc == 2 and words in err and err.count("\n") == 1, (argv, err)
        assert out == "" and "┃" not in err, argv  # no table before the refusal
        assert not run.exists(), argv


def test_action_space_of_a_checkpoint_cannot_be_overridden(tmp_path, synthetic_clip_path):
    store, ckpt = tmp_path / "s.h5", tmp_path / "p.pt"
    assert _imitate("dataset", "build", synthetic_clip_path, "--out", store, "--offsets", "2", "--copies", "1")[0] == 0
    assert _imitate("sft", "--data", store, "--out", ckpt, "--epochs", "1", "--hidden", "16")[0] == 0
    rc, _, err = _imitate("evaluate", ckpt, "--action-space", "torque", "--episodes", "1", "--seconds", "0.2")
    assert rc == 2 and "drives pd_target actions; --action-space torque" in err
    rc, _, err = _imitate("trpo", "--init", ckpt, "--action-space", "torque", "--out", tmp_path / "t")
    assert rc == 2 and "applies only from scratch" in err
    assert _imitate("evaluate", ckpt, "--action-space", "pd_target", "--episodes", "1", "--seconds", "0.2")[0] == 0


def test_every_option_has_help_and_shows_its_default():
    import argparse

    from imitate.cli import build_parser

    missing, parsers = [], [([], build_parser())]
    while parsers:
        prefix, parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [(prefix + [name], sub) for name, sub in action.choices.items()]
            elif action.dest not in ("help", "version") and not action.help:
                missing.append(" ".join(prefix + [action.option_strings[-1] if action.option_strings else action.dest]))
    assert missing == []
    rc, out, _ = _imitate("trpo", "--help")
    assert rc == 0 and "(default: 200000)" in " ".join(out.split())  # a bare `imitate trpo` runs this many
    rc, out, _ = _imitate("--help")
    assert "examples:" in out and "imitate pipeline" in out


def test_a_closed_pipe_is_not_a_traceback():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(f"{sys.executable} -m imitate.cli motions --json | head -c 10", shell=True,
                          capture_output=True, text=True, env=env, timeout=120)
    assert len(done.stdout) == 10 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_evaluate_reports_progress_to_the_end(synthetic_clip_path):
    from imitate.config import EnvConfig
    from imitate.evaluation import evaluate, expert_controller
    from imitate.experts.pd import PDExpert
    from imitate.motion import load_clip

    config = EnvConfig(clip=str(synthetic_clip_path))
    calls = []
    evaluate(expert_controller(PDExpert(load_clip(config.clip), "pd_target")), config, episodes=2,
             horizon_s=0.3, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 9) and calls[-1] == (9, 9) and len(calls) >= 2
