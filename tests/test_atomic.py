"""One atomic-write helper: the old file or the whole new one, never half, and nothing left over."""

import os

import pytest

from imitate.atomic import replaced_on_success, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "state.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError), replaced_on_success(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("the writer fails midway")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    write_text(path, "new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    os.waitpid(pid, 0)  # a process that is gone
    dead, live = tmp_path / f".x.pt.tmp{pid}", tmp_path / f".x.pt.tmp{os.getppid()}"
    dead.write_text("left by a killed writer")
    live.write_text("a writer still at work")
    write_text(tmp_path / "x.pt", "done")
    assert not dead.exists() and live.exists()
