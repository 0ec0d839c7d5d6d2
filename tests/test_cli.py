"""The imitate command, run as a user would."""

import json
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
def test_main_job_runs_end_to_end():
    """The README's main job (short horizon), as a subprocess."""
    pytest.importorskip("pybullet_data")
    proc = subprocess.run([sys.executable, "-m", "imitate.cli", "pipeline", "--seconds", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "survival" in proc.stdout and "PD servos" in proc.stdout
