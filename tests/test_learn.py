"""`imitate learn`: one call from a clip to a policy, its summary, curves and video; resumable."""

import json
import os
import subprocess
import sys

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
    # it stops at the first round (after round 0) that kept every episode up, else after all 3
    whole = [r["round"] for r in rounds if r["round"] >= 1
             and r["evaluation"]["full_horizon"] == r["evaluation"]["episodes"]]
    assert (summary["stopped"] == "every episode whole") == bool(whole)
    assert rounds[-1]["round"] == (whole[0] if whole else 3) and last["episodes"] == 1
    assert summary["labels"]["total"] == summary["labels"]["mocap"] + sum(r["new_steps"] for r in rounds)
    assert summary["settings"]["expert"] == "search" and summary["settings"]["stop_when_whole"]
    # policy.pt is the best DAgger round's checkpoint, byte for byte
    assert (out / "policy.pt").read_bytes() == (out / summary["final"]).read_bytes()
    load_checkpoint(out / "policy.pt")
    assert (out / "learning_curve.csv").exists() and (out / "learning_curve.png").exists()
    # the same call resumes: no round runs again
    again = imitate.learn(str(synthetic_clip_path), out, config=tiny(imitate.RECIPES["search"]), video_seconds=0)
    assert [r["round"] for r in again.summary["rounds"]] == [r["round"] for r in rounds]


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
