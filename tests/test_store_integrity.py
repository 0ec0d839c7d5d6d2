"""A store that never lies: damaged bytes, old stores, read-only media, a full disk, two writers
and leftovers."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from test_store import CONFIG, MODEL, make_episode

from imitate.cli import main
from imitate.errors import StoreError
from imitate.journal import JournaledFile, journal_path
from imitate.store import STAT_FIELDS, DemoStore, Episode
from imitate.store_stats import validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_everything(path) -> dict:
    """All a user can read of a store, through the store's own readers (validate included)."""
    store = DemoStore(path)
    validate(store)
    return {"attrs": store.attrs(), "index": store.episode_index(),
            "data": store.load(Episode.ARRAYS, split=None),
            "stats": {name: store.normalisation(name) for name in STAT_FIELDS}}


def same(a: dict, b: dict) -> bool:
    if a["attrs"] != b["attrs"] or a["index"] != b["index"]:
        return False
    arrays = [(a["data"][k], b["data"][k]) for k in a["data"]]
    arrays += [(a["stats"][n][k], b["stats"][n][k]) for n in a["stats"] for k in a["stats"][n]]
    return all(np.array_equal(x, y) for x, y in arrays)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("orig") / "walk.h5"
    store = DemoStore.create(path, CONFIG, model_hash=MODEL)
    store.append_round([make_episode(k, 60, "mocap") for k in range(4)], round=0, env_config=CONFIG, model_hash=MODEL)
    store.append_round([make_episode(10 + k, 50) for k in range(3)], round=1, env_config=CONFIG, model_hash=MODEL)
    return path


def damage(data: bytearray, rng: np.random.Generator) -> bytes:
    """Random runs of 1 to 4,096 random bytes, or a truncation (a third of the cases)."""
    if rng.uniform() < 1 / 3:
        return bytes(data[:int(rng.integers(0, len(data)))])
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(1, 4097))
        at = int(rng.integers(0, len(out) - 1))
        out[at:at + n] = rng.integers(0, 256, min(n, len(out) - at), dtype=np.uint8).tobytes()
    return bytes(out)


def test_damaged_copies_are_refused_or_read_back_identical(original, tmp_path, capsys):
    """Fuzz (IMITATE_FUZZ_CASES, default 40; scripts/fuzz_store.py runs thousands): each damaged
    copy is refused with one StoreError line, or everything reads back bit-identical."""
    truth = read_everything(original)
    data = bytearray(original.read_bytes())
    rng = np.random.default_rng(0)
    refused = identical = 0
    for case in range(int(os.environ.get("IMITATE_FUZZ_CASES", "40"))):
        path = tmp_path / f"case{case}.h5"
        path.write_bytes(damage(data, rng))
        try:
            got = read_everything(path)
        except StoreError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
            refused += 1
        else:
            assert same(got, truth), f"case {case}: damaged bytes read back as different data"
            identical += 1
        path.unlink()
    assert refused > 0
    # the command line says it in one line, with exit 2
    path = tmp_path / "bad.h5"
    bad = bytearray(data)
    bad[len(bad) // 2:len(bad) // 2 + 65536] = rng.integers(0, 256, 65536, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(bad))
    capsys.readouterr()
    for command in ("validate", "stats"):
        assert main(["dataset", command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_a_flipped_byte_in_an_episode_is_named(original, tmp_path):
    """One byte of one episode's observations changed: the read names the episode and dataset."""
    path = tmp_path / "flip.h5"
    shutil.copy(original, path)
    with h5py.File(original, "r") as f:
        offset = f["episodes/0000005/obs"].id.get_chunk_info(0).byte_offset  # its one chunk
    with open(path, "r+b") as fh:
        fh.seek(offset + 1000)
        byte = fh.read(1)
        fh.seek(offset + 1000)
        fh.write(bytes([byte[0] ^ 0x40]))
    store = DemoStore(path)  # attributes, index and statistics are intact
    with pytest.raises(StoreError, match=r"episode 5, dataset obs"):
        store.load(("obs",), split=None)
    with pytest.raises(StoreError, match=str(path)):
        validate(store)
    assert len(store.load(("qpos",), split=None)["qpos"]) == 4 * 60 + 3 * 50  # the rest still reads


def test_an_edited_attribute_breaks_the_digest(original, tmp_path):
    path = tmp_path / "edited.h5"
    shutil.copy(original, path)
    with h5py.File(path, "r+") as f:  # HDF5 rewrites it with a valid header checksum
        f.attrs["valid_every"] = 3
    with pytest.raises(StoreError, match="do not match their digest"):
        DemoStore(path)


def _as_version_1(src, dst):
    """What imitate wrote before checksums: no digest, no fletcher32, schema_version 1."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w", libver="latest") as g:
        for key, value in f.attrs.items():
            if key != "digest":
                g.attrs[key] = value
        g.attrs["schema_version"] = 1
        for name in ("index", "mask/train", "mask/valid"):
            g.create_dataset(name, data=f[name][()], maxshape=(None,), chunks=f[name].chunks)
        f.copy(f["stats"], g, "stats")
        for eid, group in f["episodes"].items():
            out = g.create_group(f"episodes/{eid}")
            for key, value in group.attrs.items():
                out.attrs[key] = value
            for name, ds in group.items():
                out.create_dataset(name, data=ds[()])
                assert not out[name].fletcher32


def test_a_store_without_checksums_opens_and_upgrades(original, tmp_path, capsys):
    path = tmp_path / "old.h5"
    _as_version_1(original, path)
    before = read_everything(path)
    assert not DemoStore(path).checksummed
    assert main(["dataset", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no checksums" in out and f"imitate dataset upgrade {path}" in out
    assert main(["dataset", "upgrade", str(path)]) == 0
    assert "upgraded to schema version 2" in capsys.readouterr().out
    after = read_everything(path)
    assert after["attrs"].pop("schema_version") == 2 and before["attrs"].pop("schema_version") == 1
    assert len(after["attrs"].pop("digest")) == 64
    assert same(before, after)
    with h5py.File(path, "r") as f:  # checked with plain h5py: every array carries fletcher32
        assert all(ds.fletcher32 for g in f["episodes"].values() for ds in g.values())
        assert f["index"].fletcher32 and f["mask/train"].fletcher32
    assert main(["dataset", "upgrade", str(path)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]  # no temporary left


def test_no_leftovers_after_use_and_after_a_failed_create(tmp_path):
    path = tmp_path / "walk.h5"
    store = DemoStore.create(path, CONFIG, model_hash=MODEL)
    store.append_round([make_episode(1)], round=0, env_config=CONFIG, model_hash=MODEL)
    store.load(("obs",))
    (tmp_path / "walk.h5.lock").write_text("")  # left by imitate before 0.9
    store.append_round([make_episode(2)], round=1, env_config=CONFIG, model_hash=MODEL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.h5"]
    with pytest.raises(TypeError):  # an attribute h5py cannot store: the build fails midway
        DemoStore.create(tmp_path / "other.h5", CONFIG, model_hash=MODEL, extra_attrs={"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.h5"]
    with pytest.raises(StoreError, match="found a directory"):
        DemoStore(tmp_path)
    pid = os.fork()  # a writer killed mid-create leaves its temporary; the next create removes it
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    os.waitpid(pid, 0)
    (tmp_path / f".other.h5.tmp{pid}").write_bytes(b"half a store")
    DemoStore.create(tmp_path / "other.h5", CONFIG, model_hash=MODEL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.h5", "walk.h5"]


def _run_read_only(code: str, directory) -> subprocess.CompletedProcess:
    """Run python code in a subprocess for which directory is read-only: as root, on a read-only
    bind mount of it in a mount namespace of its own; otherwise through the file modes."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if os.geteuid() == 0:
        command = ["unshare", "--mount", "sh", "-c",
                   'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"', str(directory), *command]
    try:
        return subprocess.run(command, cwd=directory, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                              text=True, timeout=120)
    except OSError as exc:
        return subprocess.CompletedProcess(command, 127, "", str(exc))


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder that the code run by _run_read_only cannot write to (skipped where neither a
    read-only bind mount nor file modes can make one)."""
    os.chmod(tmp_path, 0o555)
    probe = _run_read_only(f"""
        import sys
        try:
            open({str(tmp_path / "probe")!r}, "w")
        except OSError:
            sys.exit(0)
        sys.exit(1)
    """, tmp_path)
    if probe.returncode != 0:
        os.chmod(tmp_path, 0o755)
        pytest.skip(f"no read-only folder possible here (needs a bind mount as root, or a non-root user): "
                    f"{probe.stderr.strip()[-200:]}")
    os.chmod(tmp_path, 0o755)
    yield tmp_path
    os.chmod(tmp_path, 0o755)


def test_a_read_only_store_can_be_read(original, read_only_dir):
    path = read_only_dir / "walk.h5"
    shutil.copy(original, path)
    os.chmod(path, 0o444)
    os.chmod(read_only_dir, 0o555)
    done = _run_read_only(f"""
        from imitate.store import DemoStore
        from imitate.store_stats import validate
        store = DemoStore({str(path)!r})
        validate(store)
        print(len(store.load(("obs",), split=None)["obs"]))
    """, read_only_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(4 * 60 + 3 * 50)
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["walk.h5"]


def test_a_crashed_writers_journal_on_read_only_media_is_one_clear_line(original, read_only_dir):
    path = read_only_dir / "walk.h5"
    shutil.copy(original, path)
    JournaledFile(path).close()  # a writer that died right after starting its append
    assert journal_path(path).exists()
    for p in (path, journal_path(path)):
        os.chmod(p, 0o444)
    os.chmod(read_only_dir, 0o555)
    done = _run_read_only(f"""
        import sys
        from imitate.cli import main
        sys.exit(main(["dataset", "stats", {str(path)!r}]))
    """, read_only_dir)
    assert done.returncode == 2, done.stderr
    assert "must be recovered by a writer first" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_a_full_disk_rolls_the_append_back(original, tmp_path):
    """RLIMIT_FSIZE (what a full disk looks like to a writer) stops an append midway: it is
    rolled back, says so in one line, and the store still holds its rounds, bit-identical."""
    path = tmp_path / "walk.h5"
    shutil.copy(original, path)
    truth = read_everything(path)
    limit = os.path.getsize(path) + 64 * 1024
    code = f"""
        import resource, signal, sys
        sys.path.insert(0, {os.path.join(REPO, "tests")!r})
        from test_store import CONFIG, MODEL, make_episode
        from imitate.errors import StoreError
        from imitate.store import DemoStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write() instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
        try:
            DemoStore({str(path)!r}).append_round([make_episode(50 + k, 400) for k in range(5)], round=2,
                                                  env_config=CONFIG, model_hash=MODEL)
        except StoreError as exc:
            print(exc)
            sys.exit(2)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert done.returncode == 2, done.stderr
    assert "no space left to append round 2" in done.stdout and "rolled back" in done.stdout
    assert not journal_path(path).exists()
    assert same(read_everything(path), truth)
    assert os.path.getsize(path) == os.path.getsize(original)


def _append_rounds(path, first: int, count: int) -> None:  # pragma: no cover - child process
    store = DemoStore(path)
    for r in range(first, first + count):
        store.append_round([make_episode(100 * r + k, 200) for k in range(2)], round=r,
                           env_config=CONFIG, model_hash=MODEL)


def test_two_writers_take_turns(tmp_path):
    path = tmp_path / "walk.h5"
    DemoStore.create(path, CONFIG, model_hash=MODEL)
    pids = []
    for first in (0, 100):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _append_rounds(path, first, 6)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    store = DemoStore(path)
    counts = validate(store)
    assert counts["episodes"] == 24
    index = store.episode_index()
    assert [e["id"] for e in index] == list(range(24))
    assert sorted({e["round"] for e in index}) == list(range(6)) + list(range(100, 106))
    for e in index:  # each episode holds what its writer wrote, whole
        expected = make_episode(e["checkpoint_id"] and int(e["checkpoint_id"][4:]), 200)
        got = store.load(("obs",), split=None, rounds=[e["round"]])["obs"]
        assert any(np.array_equal(expected.obs, got[i * 200:(i + 1) * 200]) for i in range(2))


def test_a_second_dagger_run_on_a_store_is_refused(tmp_path):
    from imitate.dagger import run_dagger

    path = tmp_path / "walk.h5"
    DemoStore.create(path, CONFIG, model_hash=MODEL)
    with DemoStore(path).held_for_run():
        with pytest.raises(StoreError, match="another run is appending to this store"):
            run_dagger(tmp_path / "run", path)
        DemoStore(path).load(("obs",))  # readers are not held up
    with DemoStore(path).held_for_run():  # released with the first
        pass
    ready_r, ready_w = os.pipe()
    pid = os.fork()  # and across processes
    if pid == 0:  # pragma: no cover - child: hold it for a while
        try:
            with DemoStore(path).held_for_run():
                os.write(ready_w, b"x")
                time.sleep(3)
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    with pytest.raises(StoreError, match="another run"):
        with DemoStore(path).held_for_run():
            pass
    os.waitpid(pid, 0)
    with DemoStore(path).held_for_run():
        pass


def test_the_command_line_reads_whole_rounds_while_a_writer_appends(tmp_path):
    """`imitate dataset stats --json` run again and again during 8 appends: every count it prints
    is a whole number of rounds, and the last one all of them."""
    path = tmp_path / "walk.h5"
    DemoStore.create(path, CONFIG, model_hash=MODEL)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: 8 rounds of 3 episodes of 300 steps
        try:
            store = DemoStore(path)
            for r in range(8):
                store.append_round([make_episode(100 * r + k, 300) for k in range(3)], round=r,
                                   env_config=CONFIG, model_hash=MODEL)
        finally:
            os._exit(0)
    seen = []
    env = dict(os.environ, PYTHONPATH=REPO)
    while True:
        finished = os.waitpid(pid, os.WNOHANG) != (0, 0)
        done = subprocess.run([sys.executable, "-m", "imitate.cli", "dataset", "stats", str(path), "--json"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        steps = json.loads(done.stdout)["metadata"]["steps"]
        assert steps % (3 * 300) == 0, steps  # never part of a round
        seen.append(steps)
        if finished:
            break
    assert seen[-1] == 8 * 3 * 300
