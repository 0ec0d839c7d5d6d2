"""`imitate learn`: one call from a clip to a policy, its summary, curves and video; resumable."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from imitate.policy import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_learn_writes_the_policy_and_its_summary_and_stops_at_a_whole_round(tmp_path, synthetic_clip_path, tiny):
    import imitate

    out = tmp_path / "out"
    result = imitate.learn(str(synthetic_clip_path), out, config=tiny(imitate.RECIPES["search"]), video_seconds=0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    rounds = summary["rounds"]
    last = rounds[-1]["evaluation"]
    # it stops at the first round (after round 0) that kept at least 80% of its episodes up in its
    # own evaluation and in its confirmation, else after all 3
    whole = [r["round"] for r in rounds if r["round"] >= 1
             and r["evaluation"]["full_horizon"] >= 0.8 * r["evaluation"]["episodes"]]
    confirmations = summary["confirmations"]
    assert sorted(confirmations, key=int) == [str(r) for r in whole]  # every whole round was confirmed or not
    confirmed = [r for r in whole if confirmations[str(r)]["full_horizon"] >= 0.8 * confirmations[str(r)]["episodes"]]
    assert summary["stopped"].endswith("confirmation episodes") == bool(confirmed)
    assert rounds[-1]["round"] == (confirmed[0] if confirmed else 3) and last["episodes"] == 1
    assert summary["labels"]["total"] == summary["labels"]["mocap"] + sum(r["new_steps"] for r in rounds)
    assert summary["settings"]["expert"] == "search" and summary["settings"]["stop_when_whole"]
    assert summary["dagger_settings_history"] == []  # one set of settings throughout
    # policy.pt is the confirmed round's checkpoint, else the best round's by its own evaluation, byte for byte
    by_return = max(rounds[1:], key=lambda r: r["evaluation"]["normalised_return"]["mean"])
    assert summary["final"] == (rounds[-1] if confirmed else by_return)["checkpoint"]
    assert (out / "policy.pt").read_bytes() == (out / summary["final"]).read_bytes()
    load_checkpoint(out / "policy.pt")
    assert (out / "learning_curve.csv").exists() and (out / "learning_curve.png").exists()
    # the same call resumes: no round runs again
    again = imitate.learn(str(synthetic_clip_path), out, config=tiny(imitate.RECIPES["search"]), video_seconds=0)
    assert [r["round"] for r in again.summary["rounds"]] == [r["round"] for r in rounds]


def test_a_whole_round_that_its_confirmation_does_not_bear_out_is_not_where_learn_stops(
        tmp_path, synthetic_clip_path, tiny, monkeypatch):
    """Round 1 is whole in its own evaluation but only 3 of 5 in its confirmation: learn goes on
    to round 2, whose confirmation is 4 of 5 (at least 80%), stops there and keeps its policy."""
    from types import SimpleNamespace

    import imitate
    import imitate.pipeline as pipeline

    confirmed_whole = {1: 3, 2: 4}
    monkeypatch.setattr(pipeline, "whole_enough", lambda r, share: r.round >= 1)
    monkeypatch.setattr(pipeline, "confirm_round", lambda config, r, *a, **k: SimpleNamespace(
        full_horizon=confirmed_whole.get(r.round, 5), episodes=5))
    out = tmp_path / "out"
    result = imitate.learn(str(synthetic_clip_path), out, config=tiny(imitate.RECIPES["search"]), video_seconds=0)
    assert [r.round for r in result.pipeline.rounds] == [0, 1, 2]
    assert result.pipeline.confirmed.round == 2 and result.pipeline.best.name == "round_002.pt"
    assert result.summary["stopped"] == "whole in 4 of 5 confirmation episodes"
    assert (out / "policy.pt").read_bytes() == (out / "round_002.pt").read_bytes()


def test_a_confirmation_is_made_once_and_from_other_starts(tmp_path, synthetic_clip_path, tiny, monkeypatch):
    import imitate
    import imitate.pipeline as pipeline
    from imitate.store import DemoStore

    out = tmp_path / "out"
    recipe = replace(tiny(imitate.RECIPES["search"]), eval_episodes=2)
    result = imitate.learn(str(synthetic_clip_path), out, config=recipe, video_seconds=0)
    env_config = DemoStore(result.pipeline.store).env_config
    (out / pipeline.CONFIRMATIONS).unlink(missing_ok=True)
    calls, real = [], pipeline.evaluate
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: calls.append(k) or real(*a, **k))
    first = pipeline.confirm_round(recipe, result.pipeline.rounds[1], env_config, out)
    assert [(c["seed"], c["episodes"]) for c in calls] == [(1, 2)]  # other starts than the round's own (seed 0)
    again = pipeline.confirm_round(recipe, result.pipeline.rounds[1], env_config, out)
    assert len(calls) == 1 and again.to_dict() == first.to_dict()  # kept, not evaluated again
    more = pipeline.confirm_round(replace(recipe, eval_episodes=3), result.pipeline.rounds[1], env_config, out)
    assert len(calls) == 2 and more.episodes == 3  # other settings: confirmed again


@pytest.mark.parametrize("argv, words", [(["--rounds", "0"], "--rounds must be >= 1"),
                                         (["--trpo-samples", "-1"], "--trpo-samples must be >= 0")])
def test_learn_refuses_bad_options_in_one_line(tmp_path, synthetic_clip_path, argv, words):
    done = subprocess.run([sys.executable, "-m", "imitate.cli", "learn", str(synthetic_clip_path), "--out",
                           str(tmp_path / "o"), *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert done.returncode == 2 and words in done.stderr and not (tmp_path / "o").exists()


def test_learn_from_the_command_line(tmp_path, synthetic_clip_path):
    out = tmp_path / "o"
    done = subprocess.run([sys.executable, "-m", "imitate.cli", "learn", str(synthetic_clip_path), "--out", str(out),
                           "--expert", "pd", "--rounds", "1", "--episodes", "1", "--video-seconds", "0.2"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO, COLUMNS="200"),
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"Wrote {out}/policy.pt" in " ".join(done.stdout.split()) or "policy.pt" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["expert"] == "pd" and len(summary["rounds"]) == 2
    assert (out / "best.mp4").exists() or "no video" in done.stdout


class _Interrupted(KeyboardInterrupt):
    """A kill, simulated where a real one could land."""


def _learn(clip, out, recipe, **hooks):
    import imitate

    return imitate.learn(clip, out, config=recipe, video_seconds=0, **hooks)


def _same_outputs(a, b):
    """Two learn folders hold the same policy and the same rounds and evaluations."""
    import torch

    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    timing = ("sft_seconds",)
    assert [{k: v for k, v in r.items() if k not in timing} for r in sa["rounds"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in sb["rounds"]]
    assert sa["evaluation"] == sb["evaluation"] and sa["labels"] == sb["labels"] and sa["final"] == sb["final"]
    pa, pb = (load_checkpoint(d / "policy.pt")[0].state_dict() for d in (a, b))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert (a / "learning_curve.csv").read_text() == (b / "learning_curve.csv").read_text()


@pytest.mark.parametrize("where", ["labelling the mocap store", "after DAgger round 1", "at the evaluation"])
def test_learn_killed_at_any_stage_resumes_to_exactly_the_unbroken_outputs(tmp_path, synthetic_clip_path, tiny,
                                                                           where):
    import imitate
    from imitate.experts.search import SearchExpert

    recipe = tiny(imitate.RECIPES["search"])
    clip = str(synthetic_clip_path)
    _learn(clip, tmp_path / "unbroken", recipe)

    class KilledExpert(SearchExpert):  # dies on its 3rd batch of labels in the store's build
        calls = 0

        def label_states(self, *args, **kwargs):
            import traceback

            if any(f.name == "build_mocap_store" for f in traceback.extract_stack()):
                KilledExpert.calls += 1
                if KilledExpert.calls == 3:
                    raise _Interrupted
            return super().label_states(*args, **kwargs)

    hooks = {}
    if where == "labelling the mocap store":
        hooks["expert_factory"] = lambda c, env: KilledExpert(c, env, recipe.search)
    elif where == "after DAgger round 1":
        def on_round(r):
            if r.round == 1:
                raise _Interrupted
        hooks["on_round"] = on_round
    else:
        def on_stage(stage):
            if stage.name == "evaluation":
                raise _Interrupted
        hooks["on_stage"] = on_stage
    with pytest.raises(_Interrupted):
        _learn(clip, tmp_path / "killed", recipe, **hooks)
    assert not (tmp_path / "killed" / "summary.json").exists()
    _learn(clip, tmp_path / "killed", recipe)  # the same call, again
    _same_outputs(tmp_path / "unbroken", tmp_path / "killed")


def test_a_clip_the_expert_cannot_perform_ends_with_where_and_why(tmp_path, tiny):
    """The PD expert cannot balance walk (it falls at about 1.4 s): learn still ends normally, and
    its summary and the zoo's row say how every episode ended (time, phase, cause), not a
    traceback or a silent bad policy."""
    from dataclasses import replace

    import imitate
    from imitate.learning import ZooRow

    small = tiny(imitate.RECIPES["pd"])
    recipe = replace(small, eval_horizon_s=3.0, eval_episodes=2, dagger=replace(small.dagger, rounds=1,
                                                                                 eval_horizon_s=3.0))
    result = imitate.learn("walk", tmp_path / "o", config=recipe, video_seconds=0)
    final = result.summary["evaluation"][result.summary["final_evaluation"]]
    assert result.summary["stopped"] == "label budget spent" and final["full_horizon"] < final["episodes"]
    fell = [e for e in final["endings"] if e["cause"] != "survived"]
    assert fell and all(e["time_s"] < 3.0 and 0 <= e["phase"] <= 1 and ("floor" in e["cause"] or "root" in e["cause"])
                        for e in fell)
    row = ZooRow.from_summary(result.summary)
    assert row.whole == final["full_horizon"] and fell[0]["cause"] in row.ended


def test_a_learn_folder_moved_whole_still_resumes(tmp_path, synthetic_clip_path, tiny):
    """state.json names a store inside its run folder relative to it: the folder copied
    elsewhere resumes there (no round runs again), and the copy never touches the original."""
    import shutil

    import imitate

    recipe = tiny(imitate.RECIPES["search"])
    first = imitate.learn(str(synthetic_clip_path), tmp_path / "a", config=recipe, video_seconds=0)
    assert json.loads((tmp_path / "a" / "state.json").read_text())["store"] == f"{first.summary['clip']}.h5"
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    before = (tmp_path / "a" / f"{first.summary['clip']}.h5").read_bytes()
    again = imitate.learn(str(synthetic_clip_path), tmp_path / "b", config=recipe, video_seconds=0)
    assert [r["round"] for r in again.summary["rounds"]] == [r["round"] for r in first.summary["rounds"]]
    assert (tmp_path / "a" / f"{first.summary['clip']}.h5").read_bytes() == before


def test_an_expert_that_cannot_perform_the_clip_stops_learn_before_any_round(tmp_path, tiny):
    """expert_first (the search recipe's): the expert alone from phase 0 first; the PD expert
    falls on walk at about 1.4 s, so learn stops in one line saying when and why, with no store
    built and no round run, and a second call reads the check back instead of repeating it."""
    from dataclasses import replace

    import imitate
    from imitate.errors import ExpertError
    from imitate.pipeline import EXPERT_CHECK

    recipe = replace(tiny(imitate.RECIPES["pd"]), expert_first=True, eval_horizon_s=3.0)
    falls = r"walk: the pd expert alone falls at 1\.\d\d s of 3 \(phase 0\.\d\d: .*(floor|root)"
    with pytest.raises(ExpertError, match=falls):
        imitate.learn("walk", tmp_path / "o", config=recipe, video_seconds=0)
    check = json.loads((tmp_path / "o" / EXPERT_CHECK).read_text())["pd"]["evaluation"]
    assert check["full_horizon"] == 0 and check["endings"][0]["time_s"] < 3.0
    assert not (tmp_path / "o" / "walk.h5").exists() and not (tmp_path / "o" / "state.json").exists()
    stamp = (tmp_path / "o" / EXPERT_CHECK).stat().st_mtime_ns
    with pytest.raises(ExpertError):
        imitate.learn("walk", tmp_path / "o", config=recipe, video_seconds=0)
    assert (tmp_path / "o" / EXPERT_CHECK).stat().st_mtime_ns == stamp  # read back, not run again
    # a folder from before learn's ladder kept one check, unnamed: still read back
    path = tmp_path / "o" / EXPERT_CHECK
    path.write_text(json.dumps(json.loads(path.read_text())["pd"]))
    stamp = path.stat().st_mtime_ns
    with pytest.raises(ExpertError, match=falls):
        imitate.learn("walk", tmp_path / "o", config=recipe, video_seconds=0)
    assert path.stat().st_mtime_ns == stamp
    longer = replace(recipe, eval_horizon_s=4.0)  # another horizon (or expert): checked again
    with pytest.raises(ExpertError, match="of 4 "):
        imitate.learn("walk", tmp_path / "o", config=longer, video_seconds=0)
    from imitate.learning import zoo

    row, = zoo(["walk"], tmp_path / "z", config=recipe, video_seconds=0)
    assert "the pd expert alone falls at" in row.error and "not learned" in (tmp_path / "z" / "zoo.md").read_text()


def _ladder(tiny):
    """Two recipes for learn's ladder, cheap to check: a 'search' recipe whose expert (the PD
    servos standing in for it) falls on walk at about 1.4 s of its 3 s check, then the pd recipe,
    checked over 0.5 s, which the PD servos survive."""
    from dataclasses import replace

    import imitate

    falls = replace(tiny(imitate.RECIPES["search"]), expert_first=True, eval_horizon_s=3.0, expert_check_s=None)
    performs = replace(tiny(imitate.RECIPES["pd"]), expert_first=True, expert_check_s=0.5,
                       dagger=replace(tiny(imitate.RECIPES["pd"]).dagger, rounds=1))
    return falls, performs


_CLOSED = []  # the stand-ins learn closed


def _pd_standing_in(clip, env_config):
    from imitate.experts.pd import PDExpert

    class Closable(PDExpert):  # as a RayExpert is: learn must free its workers once it has fallen
        def close(self):
            _CLOSED.append(self)

    return Closable(clip, env_config.action_space)


def test_learn_goes_down_its_ladder_to_the_first_expert_that_performs_the_clip(tmp_path, tiny):
    """The first recipe's expert falls alone, so learn learns from the next one's: the summary
    records the refusal (its settings, when and why), the check file keeps both experts' checks,
    a second call reads both back and resumes, and the zoo counts the folder as finished for that
    ladder, but not for one whose first recipe was not refused there."""
    import imitate
    from imitate.learning import finished_summary, ladder_of, settings_json
    from imitate.pipeline import EXPERT_CHECK

    falls, performs = _ladder(tiny)
    notes = []
    factories = {"search": _pd_standing_in}
    _CLOSED.clear()
    stages = []
    result = imitate.learn("walk", tmp_path / "o", config=(falls, performs), video_seconds=0,
                           on_progress=notes.append, expert_factory=factories, on_stage=stages.append)
    # each expert's check is reported as new the first time (the file already exists for the second)
    assert [(s.expert, s.resumed) for s in stages if s.name == "expert"] == [("search", False), ("pd", False)]
    summary = result.summary
    rungs = ladder_of("walk", (falls, performs))
    assert summary["settings"] == settings_json(rungs[1]) and summary["settings"]["expert"] == "pd"
    refusal, = summary["refused"]
    assert refusal["settings"] == settings_json(rungs[0])
    assert refusal["fell"].startswith("the search expert alone falls at 1.") and " s of 3 " in refusal["fell"]
    assert any(n.startswith("the search expert alone falls at") and n.endswith("trying the pd expert")
               for n in notes)
    checks = json.loads((tmp_path / "o" / EXPERT_CHECK).read_text())
    assert checks["search"]["evaluation"]["full_horizon"] == 0 and checks["pd"]["evaluation"]["full_horizon"] == 1
    assert [r["round"] for r in summary["rounds"]] == [0, 1] and (tmp_path / "o" / "policy.pt").exists()
    assert len(_CLOSED) == 1  # the fallen expert was closed (a RayExpert's workers freed for the next)

    stamp = (tmp_path / "o" / EXPERT_CHECK).stat().st_mtime_ns
    stages.clear()
    again = imitate.learn("walk", tmp_path / "o", config=(falls, performs), video_seconds=0,
                          expert_factory=factories, on_stage=stages.append)
    assert [(s.expert, s.resumed) for s in stages if s.name == "expert"] == [("search", True), ("pd", True)]
    assert (tmp_path / "o" / EXPERT_CHECK).stat().st_mtime_ns == stamp  # both checks read back
    assert again.summary["rounds"] == summary["rounds"] and again.summary["refused"] == summary["refused"]

    assert finished_summary(tmp_path / "o", rungs) is not None
    assert finished_summary(tmp_path / "o", rungs[1:]) is not None  # the pd recipe's own result too
    from dataclasses import replace
    other_first = replace(rungs[0], expert_check_s=2.0)  # never refused in this folder: it might perform
    assert finished_summary(tmp_path / "o", (other_first, rungs[1])) is None


def test_imitate_learn_goes_down_the_ladder_by_default_and_shows_each_experts_check(tmp_path, tiny, monkeypatch,
                                                                                     capsys):
    """`imitate learn CLIP` with no --expert: the ladder (patched here to the two cheap recipes of
    _ladder, the PD servos standing in for the search), each check shown under its expert's name."""
    import imitate.learning as learning
    import imitate.pipeline as pipeline
    from imitate.cli import main

    falls, performs = _ladder(tiny)
    monkeypatch.setattr(learning, "LADDER", ("search", "pd"))
    monkeypatch.setitem(pipeline.RECIPES, "search", falls)
    monkeypatch.setitem(pipeline.RECIPES, "pd", performs)
    real = pipeline.make_expert
    monkeypatch.setattr(pipeline, "make_expert", lambda name, clip, env_config, **k: _pd_standing_in(clip, env_config)
                        if name == "search" else real(name, clip, env_config, **k))
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["learn", "walk", "--out", str(tmp_path / "o"), "--rounds", "1", "--episodes", "1",
                 "--video-seconds", "0"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "0. the search expert alone from phase 0" in shown and "trying the pd expert" in shown
    assert "0. the pd expert alone from phase 0" in shown and "the pd expert relabels" in shown
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["settings"]["expert"] == "pd"


def test_a_clip_no_expert_of_the_ladder_performs_is_refused_in_one_line_naming_each_fall(tmp_path, tiny):
    from dataclasses import replace

    import imitate
    from imitate.errors import ExpertError

    falls, performs = _ladder(tiny)
    also_falls = replace(performs, expert_check_s=3.0)
    with pytest.raises(ExpertError) as caught:
        imitate.learn("walk", tmp_path / "o", config=(falls, also_falls), video_seconds=0,
                      expert_factory={"search": _pd_standing_in})
    message = str(caught.value)
    assert message.startswith("walk: no expert performs it alone from phase 0 (the search expert alone falls at 1.")
    assert "; the pd expert alone falls at 1." in message and "so no round was run" in message
    assert len(message.splitlines()) == 1 and not (tmp_path / "o" / "walk.h5").exists()


def test_a_guided_experts_fall_says_where_its_reconstructed_trajectory_gave_up(tmp_path, tiny):
    """An expert whose trajectory was reconstructed only part of the way (the guided expert's
    reconstructed_s; the PD servos standing in, falling at about 1.4 s) is refused with where the
    reconstruction gave up beside when and why it fell; one whose trajectory goes the whole way is not."""
    from dataclasses import replace

    import imitate
    from imitate.errors import ExpertError

    falls, _ = _ladder(tiny)

    def partly_reconstructed(reached_s):
        def make(clip, env_config):
            expert = _pd_standing_in(clip, env_config)
            expert.reconstructed_s = reached_s
            return expert
        return {"search": make}

    recipe = replace(falls, expert_check_s=3.0)
    with pytest.raises(ExpertError, match=r"falls at 1\.\d\d s of 3 \(phase [0-9.]+: .*; its trajectory, "
                                          r"reconstructed offline, gave up at 0\.50 s\)"):
        imitate.learn("walk", tmp_path / "a", config=recipe, video_seconds=0, expert_factory=partly_reconstructed(0.5))
    with pytest.raises(ExpertError) as caught:
        imitate.learn("walk", tmp_path / "b", config=recipe, video_seconds=0, expert_factory=partly_reconstructed(3.0))
    assert "gave up at" not in str(caught.value) and "falls at 1." in str(caught.value)


def test_expert_check_s_sets_the_checks_horizon(tmp_path, tiny):
    """expert_check_s (the main job's 5 s): the expert alone is checked over that horizon, not the
    evaluation's; the PD expert, which falls at about 1.4 s, still falls inside a 2 s check."""
    from dataclasses import replace

    import imitate
    from imitate.errors import ExpertError
    from imitate.pipeline import EXPERT_CHECK

    recipe = replace(tiny(imitate.RECIPES["pd"]), expert_first=True, eval_horizon_s=20.0, expert_check_s=2.0)
    with pytest.raises(ExpertError, match="of 2 "):
        imitate.learn("walk", tmp_path / "o", config=recipe, video_seconds=0)
    check = json.loads((tmp_path / "o" / EXPERT_CHECK).read_text())["pd"]
    assert check["evaluation"]["horizon_s"] == 2.0 and check["key"]["horizon_s"] == 2.0
    with pytest.raises(imitate.ConfigError, match="expert_check_s"):
        replace(recipe, expert_check_s=0.0)


def test_the_main_job_is_the_search_recipe_on_a_small_budget(monkeypatch):
    """imitate pipeline: learn with RECIPES["main"] (the search recipe, at most 6 rounds, a 5 s
    expert check, stopping at a confirmed whole round) into runs/pipeline-walk; --expert pd keeps
    the teaching example's pipeline."""
    from dataclasses import replace

    import imitate.cli as cli
    from imitate.pipeline import RECIPES

    main = RECIPES["main"]
    assert main == replace(RECIPES["search"], dagger=replace(RECIPES["search"].dagger, rounds=6), expert_check_s=5.0,
                           stop_when_whole=True)
    seen = {}
    monkeypatch.setattr(cli, "_learn_and_show", lambda clip, out, config, *rest: seen.update(
        clip=clip, out=out, config=config, rest=rest) or 0)
    assert cli.main(["pipeline"]) == 0
    assert seen["clip"] == "walk" and seen["out"] == "runs/pipeline-walk"
    assert seen["config"] == replace(main, clip="walk") and seen["rest"][:3] == (6, 5, 0)
    assert cli.main(["pipeline", "--rounds", "2", "--out", "elsewhere"]) == 0
    assert seen["out"] == "elsewhere" and seen["config"].dagger.rounds == 2
    called = []
    monkeypatch.setattr(cli, "_learn_and_show", lambda *a: called.append(a) or 0)
    monkeypatch.setattr("imitate.pipeline.run_pipeline", lambda *a, **k: (_ for _ in ()).throw(SystemExit(7)))
    with pytest.raises(SystemExit, match="7"):  # the pd route runs the pipeline itself, not learn
        cli.main(["pipeline", "--expert", "pd"])
    assert not called


def test_the_expert_check_of_a_short_clip_that_does_not_loop_ends_with_the_clip(tmp_path, tiny):
    """expert_check_s longer than a clip that does not loop (the main job's 5 s, kick's 1.53 s):
    the check runs over the clip's length instead of being refused."""
    from dataclasses import replace

    from conftest import synthetic_frames, write_clip

    import imitate
    from imitate.pipeline import EXPERT_CHECK

    clip = write_clip(tmp_path / "short.txt", synthetic_frames(num_frames=20), loop="none")  # 0.63 s
    recipe = replace(tiny(imitate.RECIPES["pd"]), expert_first=True, expert_check_s=5.0)
    try:
        imitate.learn(str(clip), tmp_path / "o", config=recipe, video_seconds=0)
    except imitate.ImitateError as exc:  # the PD expert may fall; the horizon must not be refused
        assert "past the end" not in str(exc)
    check = json.loads((tmp_path / "o" / EXPERT_CHECK).read_text())["pd"]
    assert check["evaluation"]["horizon_s"] == pytest.approx(imitate.load_clip(clip).duration_s)


def test_a_run_folder_of_another_experts_recipe_is_refused(tmp_path, synthetic_clip_path, tiny):
    """A folder whose store the pd recipe labelled is refused by the search recipe in one line
    (the old main job's runs/pipeline-walk), instead of mixing two experts' rounds."""
    from dataclasses import replace

    import imitate

    pd = replace(tiny(imitate.RECIPES["pd"]), dagger=replace(tiny(imitate.RECIPES["pd"]).dagger, rounds=1))
    imitate.learn(str(synthetic_clip_path), tmp_path / "o", config=pd, video_seconds=0)
    rounds = json.loads((tmp_path / "o" / "state.json").read_text())["rounds"]
    with pytest.raises(imitate.ConfigError, match="labelled by the pd expert, not the search expert"):
        imitate.learn(str(synthetic_clip_path), tmp_path / "o", config=tiny(imitate.RECIPES["search"]), video_seconds=0)
    assert json.loads((tmp_path / "o" / "state.json").read_text())["rounds"] == rounds  # nothing ran


def test_the_search_recipes_in_torque_space_are_refused_at_once(tmp_path):
    """The residual learner adds servo targets: torque with the search recipe is refused before
    any work, in one line from the command line; the pd recipe takes torque."""
    from dataclasses import replace

    import imitate

    with pytest.raises(imitate.ConfigError, match="needs the pd_target action space"):
        replace(imitate.RECIPES["main"], action_space="torque")
    replace(imitate.RECIPES["pd"], action_space="torque")
    done = subprocess.run([sys.executable, "-m", "imitate.cli", "pipeline", "--action-space", "torque", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO),
                          timeout=120)
    assert done.returncode == 2 and "needs the pd_target action space" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


def test_no_expert_check_turns_the_search_recipes_check_off():
    """imitate learn --no-expert-check: the recipe without its expert check (the pd recipe has none);
    by default the ladder of the search and guided recipes, both checked, and with no check only
    the search's (nothing would tell the rungs apart)."""
    from imitate.cli import _learn_recipe, build_parser

    parse = build_parser().parse_args
    ladder, _ = _learn_recipe(parse(["learn", "walk"]))
    assert [r.expert for r in ladder] == ["search", "guided"] and all(r.expert_first for r in ladder)
    checked, _ = _learn_recipe(parse(["learn", "walk", "--expert", "search"]))
    unchecked, _ = _learn_recipe(parse(["learn", "walk", "--no-expert-check"]))
    assert checked.expert_first and not unchecked.expert_first and unchecked.expert == "search"
    assert not _learn_recipe(parse(["learn", "walk", "--expert", "pd"]))[0].expert_first


def test_the_guided_recipe_labels_every_round_around_the_reconstructed_trajectory(tmp_path, synthetic_clip_path,
                                                                                   tiny, monkeypatch):
    """learn with the guided recipe: the trajectory reconstructed once (into the cache), then every
    label of the store, mocap round and DAgger rounds alike, made by the search around it: each
    episode's recorded provenance names that trajectory (made periodic: the clip loops) by its
    digest, recomputed here from the cached file."""
    import hashlib
    from dataclasses import replace

    import h5py
    import numpy as np

    import imitate
    from imitate.config import EnvConfig
    from imitate.experts.reconstruct import ReconstructConfig
    from imitate.experts.search import periodic_targets
    from imitate.experts.tracking import TrackingConfig
    from imitate.motion import load_clip

    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))
    small = TrackingConfig(reconstruct=ReconstructConfig(samples=12, elites=3, window_steps=2, lookahead_steps=1,
                                                         seed=1, nthread=1), horizon_s=0.2)
    recipe = replace(tiny(imitate.RECIPES["guided"]), tracking=small, expert_first=False)
    notes = []
    result = imitate.learn(str(synthetic_clip_path), tmp_path / "o", config=recipe, video_seconds=0,
                           on_progress=notes.append)
    assert result.summary["settings"]["expert"] == "guided"
    assert any("for the guided expert (once; then cached)" in n for n in notes)
    cached, = (tmp_path / "cache").glob("tracking-*.npz")
    clip = load_clip(synthetic_clip_path)
    with np.load(cached) as prepared:  # made periodic over its horizon, a cycle and a search's
        steps = round(small.horizon_s * 30) + round(clip.duration_s * 30) + recipe.search.horizon
        ctrl = periodic_targets(clip, EnvConfig(clip=str(synthetic_clip_path)), prepared["ctrl"], steps)
    digest = hashlib.sha256(ctrl.tobytes()).hexdigest()[:16]
    provenances = []
    with h5py.File(tmp_path / "o" / f"{result.summary['clip']}.h5", "r") as f:
        f.visititems(lambda name, obj: provenances.append((obj.attrs["source"], json.loads(obj.attrs["labelled_by"])))
                     if "labelled_by" in obj.attrs else None)
    assert {source for source, _ in provenances} == {"mocap", "dagger", "plan"}  # the recipe's plan labels too
    assert all(p["kind"] == "search" and p["nominal"] == {"steps": len(ctrl), "sha256": digest}
               for _, p in provenances)
    # the search recipe (no check) does not resume this folder: its store holds the guided expert's labels
    with pytest.raises(imitate.ConfigError, match="labelled by the guided expert, not the search expert"):
        imitate.learn(str(synthetic_clip_path), tmp_path / "o", config=replace(recipe, expert="search",
                      search=tiny(imitate.RECIPES["search"]).search), video_seconds=0)


def test_the_search_recipes_refusal_names_the_guided_expert_as_the_one_to_try(tmp_path):
    """A clip the search expert cannot perform: its refusal points at --expert guided (which
    performs more clips); the other recipes' refusals do not.  The PD servos stand in for a
    search that falls (on walk at about 1.4 s), so the check costs a second."""
    from dataclasses import replace

    import imitate
    from imitate.config import EnvConfig
    from imitate.errors import ExpertError
    from imitate.experts.pd import PDExpert
    from imitate.motion import load_clip
    from imitate.pipeline import check_expert

    config = EnvConfig(clip="walk")
    falls = PDExpert(load_clip("walk"), config.action_space)
    for name, hinted in (("search", True), ("pd", False), ("guided", False)):
        recipe = replace(imitate.RECIPES[name], eval_horizon_s=3.0, expert_check_s=None)
        with pytest.raises(ExpertError) as caught:
            check_expert(recipe, falls, config, tmp_path / name)
        assert f"walk: the {name} expert alone falls at 1." in str(caught.value)
        assert ("--expert guided" in str(caught.value)) == hinted, str(caught.value)
        assert len(str(caught.value).splitlines()) == 1


def test_learns_trpo_stage_explores_no_more_than_a_walking_policy_tolerates(tmp_path, synthetic_clip_path, tiny):
    """--trpo-samples after the search recipe's DAgger: TRPO's exploration noise on the actions
    starts at most 0.02 action units (a walking DAgger policy kept its feet in 2 of 10 episodes
    under 0.02 noise and falls within a second under TRPOConfig's default e^-1 = 0.37:
    docs/trpo.md), a quarter of its episodes start at time 0 (one walk TRPO run without them
    fell from the standing start), and the TRPO policy becomes policy.pt."""
    import csv
    import math

    import imitate

    out = tmp_path / "out"
    result = imitate.learn(str(synthetic_clip_path), out, config=tiny(imitate.RECIPES["search"]), trpo_samples=2048,
                           video_seconds=0)
    first = next(csv.DictReader((out / "trpo" / "log.csv").open()))
    assert math.exp(float(first["log_std"])) <= 0.02
    # and a quarter of its episodes start from the standing start, as the evaluation's do
    assert json.loads((out / "trpo" / "config.json").read_text())["env"]["zero_start_share"] == 0.25
    assert result.summary["final_evaluation"] == "+ TRPO" and result.summary["env_samples"]["trpo"] == 2048
    assert (out / "policy.pt").read_bytes() == (out / "trpo" / "policy.pt").read_bytes()


def test_a_trpo_stage_begun_with_other_settings_is_not_resumed_as_todays(tmp_path, synthetic_clip_path, tiny):
    """A learn folder whose TRPO stage ran with other settings (here TRPOConfig's defaults: noise
    e^-1 and random starts only, as learn used before) is refused in one line when learn asks for today's (e^-4), rather
    than resumed under a summary that records settings it did not run with; more samples of the
    same settings resume."""
    from dataclasses import replace

    import imitate
    from imitate.errors import ConfigError
    from imitate.trpo import TRPOConfig

    out, recipe = tmp_path / "out", tiny(imitate.RECIPES["search"])
    imitate.learn(str(synthetic_clip_path), out, config=replace(recipe, trpo=TRPOConfig(samples=1024)),
                  trpo_samples=1024, video_seconds=0)
    with pytest.raises(ConfigError, match=r"begun with set_log_std=None, zero_start_share=None; this recipe's is "
                                         r"set_log_std=-4\.0, zero_start_share=0\.25") as e:
        imitate.learn(str(synthetic_clip_path), out, config=recipe, trpo_samples=2048, video_seconds=0)
    assert len(str(e.value).splitlines()) == 1
    # a record from before a setting existed ran at that setting's default, not at today's
    saved = out / "trpo" / "config.json"
    record = json.loads(saved.read_text())
    del record["trpo"]["zero_start_share"]
    saved.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"begun with zero_start_share=None; this recipe's is zero_start_share=0\.25"):
        imitate.learn(str(synthetic_clip_path), out, video_seconds=0, trpo_samples=2048,
                      config=replace(recipe, trpo=TRPOConfig(samples=1024, zero_start_share=0.25)))
    more = imitate.learn(str(synthetic_clip_path), out, config=replace(recipe, trpo=TRPOConfig(samples=1024)),
                         trpo_samples=2048, video_seconds=0)
    assert more.summary["env_samples"]["trpo"] == 2048
    # a TRPO stage begun from another round than the one DAgger keeps (as learn began it from the
    # last round before) is refused too, not continued under a summary that says otherwise
    record = json.loads(saved.read_text())
    kept = Path(record["init"]).name
    record["init"] = str(out / ("round_000.pt" if kept != "round_000.pt" else "round_001.pt"))
    saved.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=f"began from round_00.\\.pt; this recipe's starts from {kept}"):
        imitate.learn(str(synthetic_clip_path), out, config=replace(recipe, trpo=TRPOConfig(samples=1024)),
                      trpo_samples=4096, video_seconds=0)
