"""`imitate zoo`: learn over several clips, one table (Markdown and CSV), resumable."""

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import synthetic_frames, write_clip

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def two_clips(tmp_path):
    return [str(write_clip(tmp_path / f"clip{seed}.txt", synthetic_frames(seed=seed))) for seed in (1, 2)]


def test_zoo_tabulates_each_clips_final_policy_and_resumes_without_learning_again(tmp_path, two_clips, tiny,
                                                                                monkeypatch):
    import imitate
    from imitate import learning

    out = tmp_path / "zoo"
    recipe = tiny(imitate.RECIPES["search"])
    rows = learning.zoo([*two_clips, "no_such_clip"], out, config=recipe, video_seconds=0)
    assert [r.clip for r in rows] == ["clip1", "clip2", "no_such_clip"]
    assert "no clip 'no_such_clip'" in rows[2].error
    for row in rows[:2]:
        summary = json.loads((out / row.clip / "summary.json").read_text())
        final = summary["evaluation"][summary["final_evaluation"]]
        # the row is the final policy's evaluation: the one of the checkpoint policy.pt copies
        assert (out / row.clip / "policy.pt").read_bytes() == (out / row.clip / summary["final"]).read_bytes()
        assert summary["final"] in [r["checkpoint"] for r in summary["rounds"]]
        assert row.normalised_return == final["normalised_return"]["mean"]
        assert row.whole == final["full_horizon"] and row.episodes == 1
        assert row.labels == summary["labels"]["mocap"] + sum(r["new_steps"] for r in summary["rounds"])
        assert row.minutes > 0 and not row.error
    md = (out / "zoo.md").read_text().splitlines()
    assert md[0].startswith("| clip | expert | normalised return |") and len(md) == 2 + 3
    assert md[2].startswith(f"| clip1 | search | {rows[0].normalised_return:.3f} |")
    assert "not learned: no clip" in md[4]
    table = list(csv.DictReader((out / "zoo.csv").open()))
    assert [t["clip"] for t in table] == ["clip1", "clip2", "no_such_clip"]
    assert float(table[1]["normalised_return"]) == rows[1].normalised_return

    # resumed: finished clips are read back, not learned again
    def must_not_learn(*args, **kwargs):
        raise AssertionError("learn ran again on a finished clip")

    monkeypatch.setattr(learning, "learn", must_not_learn)
    # a summary written before a setting existed still counts as this recipe's where the recipe
    # leaves that setting at its default (here: the search's antithetic draws, off)
    assert not recipe.search.antithetic and not type(recipe.search)().antithetic
    older = out / "clip1" / "summary.json"
    summary = json.loads(older.read_text())
    del summary["settings"]["search"]["antithetic"]
    older.write_text(json.dumps(summary))
    again = learning.zoo(two_clips, out, config=recipe, video_seconds=0)
    assert again == rows[:2]

    # ... but not where the recipe sets it away from its default (expert_first: True against the
    # default False): that run had no expert check, so the clip is learned again
    assert recipe.expert_first and not type(recipe)().expert_first
    del summary["settings"]["expert_first"]
    older.write_text(json.dumps(summary))
    learned = []
    monkeypatch.setattr(learning, "learn", lambda clip, *a, **k: learned.append(clip) or must_not_learn())
    with pytest.raises(AssertionError, match="learn ran again"):
        learning.zoo(two_clips, out, config=recipe, video_seconds=0)
    assert learned == [two_clips[0]]


def test_zoo_from_the_command_line_refuses_bad_options_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "imitate.cli", "zoo", "walk", "--out", str(tmp_path / "z"),
                           "--cpus-per-clip", "0"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert done.returncode == 2 and "--cpus-per-clip must be >= 1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_zoo_from_the_command_line_shows_each_round_and_the_table(tmp_path, two_clips):
    done = subprocess.run([sys.executable, "-m", "imitate.cli", "zoo", *two_clips, "--out", str(tmp_path / "z"),
                           "--expert", "pd", "--rounds", "1", "--episodes", "1", "--video-seconds", "0"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO, COLUMNS="250"),
                          timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "round 1:" in out and "imitate zoo: 2 clips" in out and "clip1" in out and "clip2" in out
    assert (tmp_path / "z" / "zoo.md").read_text().count("| clip") == 3  # the header and two rows


def test_a_zoo_row_shows_the_final_rounds_confirmation_beside_its_evaluation():
    from imitate.learning import COLUMNS, ZooRow, cells

    def ev(whole, ret):
        stat = {"mean": 1.0, "std": 0.0}
        return {"normalised_return": {"mean": ret, "std": 0.0}, "survival_s": stat, "horizon_s": 20.0,
                "full_horizon": whole, "episodes": 5, "endings": [{"time_s": 20.0, "phase": 0.5, "cause": "survived"}],
                "joint_error_deg": stat, "end_effector_error_cm": stat}

    summary = {"clip": "walk", "final": "round_006.pt", "final_evaluation": "DAgger (round 6)",
               "rounds": [{"round": 5, "checkpoint": "round_005.pt"}, {"round": 6, "checkpoint": "round_006.pt"}],
               "confirmations": {"5": ev(1, 0.25), "6": ev(5, 0.804)},
               "evaluation": {"DAgger (round 6)": ev(4, 0.676)}, "labels": {"total": 10}, "env_samples": {"total": 20},
               "wall_s": 60.0, "settings": {"expert": "guided"}}
    row = ZooRow.from_summary(summary)
    assert row.expert == "guided" and cells(row)[1] == "guided"
    assert (row.whole, row.confirmed_whole, row.confirmed_return) == (4, 5, 0.804)  # round 6's, not round 5's
    assert dict(zip(COLUMNS, cells(row), strict=True))["confirmed: whole, return"] == "5 of 5, 0.804"
    # a final policy that no confirmation measured (TRPO's): "-"
    summary["final"] = "trpo/policy.pt"
    row = ZooRow.from_summary(summary)
    assert row.confirmed_whole is None
    assert dict(zip(COLUMNS, cells(row), strict=True))["confirmed: whole, return"] == "-"
    assert len(cells(ZooRow(clip="x", error="no clip"))) == len(COLUMNS)


def test_recorded_settings_match_a_recipe_with_dataclasses_inside_a_tuple():
    """_same against settings_json's own record (asdict, then JSON): a setting that is a tuple of
    dataclasses compares as the dicts asdict makes, and a changed one inside it does not match."""
    import json
    from dataclasses import asdict, dataclass, replace

    from imitate.learning import _same

    @dataclass(frozen=True)
    class Inner:
        a: int = 1

    @dataclass(frozen=True)
    class Outer:
        items: tuple = (Inner(), Inner(2))

    recorded = json.loads(json.dumps(asdict(Outer())))
    assert _same(recorded, Outer())
    assert not _same(recorded, replace(Outer(), items=(Inner(), Inner(3))))
