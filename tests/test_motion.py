"""Motion clips: conventions checked against independent references.

- Body positions: an independent forward kinematics of the raw DeepMimic frames, in
  DeepMimic's own Y-up frame, from the character's attach points written here as figures
  (humanoid3d_character.txt) and scipy's rotations; converted to Z-up only at the end.
- Velocities: MuJoCo's own mj_differentiatePos and body velocities against finite
  differences of positions.
"""

import json

import mujoco
import numpy as np
import pytest
from conftest import synthetic_frames, write_clip
from scipy.spatial.transform import Rotation

from imitate import MotionFormatError, load_clip
from imitate import humanoid as hum
from imitate.motion import MotionClip, parse_clip

CLASSIC = ("backflip", "cartwheel", "crawl", "dance_a", "dance_b", "getup_facedown", "getup_faceup",
           "jump", "kick", "punch", "roll", "run", "spin", "spinkick", "walk")

# DeepMimic humanoid3d: joint -> (parent, attach point in the parent's frame [m, Y-up],
# offset of its value in a frame, dof).  Wrists are fixed joints (no value).
DM_SKELETON = {
    "root": (None, (0.0, 0.0, 0.0), 4, 4),
    "chest": ("root", (0.0, 0.236151, 0.0), 8, 4),
    "neck": ("chest", (0.0, 0.223894, 0.0), 12, 4),
    "right_hip": ("root", (0.0, 0.0, 0.084887), 16, 4),
    "right_knee": ("right_hip", (0.0, -0.421546, 0.0), 20, 1),
    "right_ankle": ("right_knee", (0.0, -0.40987, 0.0), 21, 4),
    "right_shoulder": ("chest", (-0.02405, 0.2435, 0.18311), 25, 4),
    "right_elbow": ("right_shoulder", (0.0, -0.274788, 0.0), 29, 1),
    "right_wrist": ("right_elbow", (0.0, -0.258947, 0.0), None, 0),
    "left_hip": ("root", (0.0, 0.0, -0.084887), 30, 4),
    "left_knee": ("left_hip", (0.0, -0.421546, 0.0), 34, 1),
    "left_ankle": ("left_knee", (0.0, -0.40987, 0.0), 35, 4),
    "left_shoulder": ("chest", (-0.02405, 0.2435, -0.18311), 39, 4),
    "left_elbow": ("left_shoulder", (0.0, -0.274788, 0.0), 43, 1),
    "left_wrist": ("left_elbow", (0.0, -0.258947, 0.0), None, 0),
}


def deepmimic_fk(frame):
    """Global joint positions {name: (3,)} of one raw frame, DeepMimic Y-up."""
    pos, rot = {}, {}
    for name, (parent, attach, off, dof) in DM_SKELETON.items():
        if dof == 4:
            w, x, y, z = frame[off:off + 4]
            local = Rotation.from_quat([x, y, z, w])  # scipy is scalar-last
        elif dof == 1:  # revolute joints turn about DeepMimic's z axis
            local = Rotation.from_rotvec([0.0, 0.0, frame[off]])
        else:
            local = Rotation.identity()
        if parent is None:
            pos[name], rot[name] = np.array(frame[1:4]), local
        else:
            pos[name] = pos[parent] + rot[parent].apply(attach)
            rot[name] = rot[parent] * local
    return pos


def to_zup(p):
    return np.array([p[0], -p[2], p[1]])


def classic(name):
    pytest.importorskip("pybullet_data", reason="the classic clips ship in pybullet (pip install 'imitate[clips]')")
    return load_clip(name)


@pytest.mark.parametrize("name", CLASSIC)
def test_body_positions_match_independent_deepmimic_fk(name):
    clip = classic(name)
    raw = json.loads(clip.path.read_text())["Frames"]
    # every frame as qpos (at t = duration a looping clip is already in its next cycle)
    ours = hum.body_positions(clip.frame_qpos)  # (F, bodies, 3)
    np.testing.assert_allclose(clip.body_positions(clip.frame_times[:-1]), ours[:-1], atol=1e-9)
    worst = 0.0
    for k, frame in enumerate(raw):
        ref = deepmimic_fk(frame)
        for b, body in enumerate(hum.BODY_NAMES):
            worst = max(worst, np.linalg.norm(ours[k, b] - to_zup(ref[body])))
    assert worst < 0.01, f"{name}: worst body position error {worst * 100:.2f} cm"


@pytest.mark.parametrize("name", CLASSIC)
def test_velocities_match_finite_differences(name):
    """qvel against MuJoCo's mj_differentiatePos of qpos, and the velocities of the body
    origins (MuJoCo's body Jacobians times qvel) against finite differences of positions."""
    clip = classic(name)
    model = hum.load_model()
    data = mujoco.MjData(model)
    rng = np.random.default_rng(1)
    k = rng.integers(0, clip.num_frames - 1, size=8)
    t = clip.frame_times[k] + rng.uniform(0.2, 0.8, size=8) * np.diff(clip.frame_times)[k]
    h = 1e-6
    q0, q1, v = clip.qpos(t), clip.qpos(t + h), clip.qvel(t)
    p0, p1 = clip.body_positions(t), clip.body_positions(t + h)
    ids = [hum.body_id(b) for b in hum.BODY_NAMES]
    for i in range(len(t)):
        fd = np.zeros(model.nv)
        mujoco.mj_differentiatePos(model, fd, h, q0[i], q1[i])
        np.testing.assert_allclose(v[i], fd, atol=1e-4, rtol=1e-5)
        data.qpos[:], data.qvel[:] = q0[i], v[i]
        mujoco.mj_forward(model, data)
        for b, bid in enumerate(ids):
            jacp = np.zeros((3, model.nv))
            mujoco.mj_jacBody(model, data, jacp, None, bid)
            np.testing.assert_allclose(jacp @ v[i], (p1[i, b] - p0[i, b]) / h, atol=1e-3)


@pytest.mark.parametrize("name", CLASSIC)
def test_root_angular_speed_takes_the_short_way(name):
    """|root angular velocity| of each frame interval = the angle between the raw root
    quaternions / dt, computed independently (catches q vs -q hemisphere flips)."""
    clip = classic(name)
    raw = np.array(json.loads(clip.path.read_text())["Frames"])
    r = Rotation.from_quat(raw[:, [5, 6, 7, 4]])
    expected = (r[:-1].inv() * r[1:]).magnitude() / raw[:-1, 0]
    ours = np.linalg.norm(clip._segment_qvel[:, hum.ROOT_ANGVEL], axis=1)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("name", CLASSIC)
def test_hinge_angles_continuous_no_flips(name):
    """Midway between frames, the interpolated hinge angles give (nearly) the slerp of the
    raw joint rotations: a 2*pi jump or a gimbal flip would put them far off."""
    clip = classic(name)
    raw = np.array(json.loads(clip.path.read_text())["Frames"])
    t_mid = 0.5 * (clip.frame_times[1:] + clip.frame_times[:-1])
    qmid = clip.qpos(t_mid)
    for joint in hum.SPHERICAL_JOINTS:
        off = DM_SKELETON[joint.name][2]
        rq = Rotation.from_quat(raw[:, [off + 1, off + 2, off + 3, off]])
        # DeepMimic Y-up -> Z-up: conjugate by the frame change
        c = Rotation.from_matrix([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
        rz = c * rq * c.inv()
        ours = Rotation.from_euler("XYZ", qmid[:, hum.HINGE_QPOS][:, list(joint.hinges)])
        for k in range(len(t_mid)):
            mid = rz[k] * Rotation.from_rotvec(0.5 * (rz[k].inv() * rz[k + 1]).as_rotvec())
            err = (mid.inv() * ours[k]).magnitude()
            # 0.28 rad is the largest on backflip (16 fps, fast motion); a flip gives ~pi
            assert err < 0.35, f"{name} {joint.name} between frames {k} and {k + 1}: {err:.3f} rad"


def test_durations_and_loop_offsets_of_walk():
    clip = classic("walk")
    assert clip.num_frames == 39 and clip.loop
    assert clip.duration_s == pytest.approx(1.267, abs=1e-3)
    assert clip.distance_per_cycle_m == pytest.approx(1.239, abs=2e-3)
    t = np.array([0.1, 0.5, 1.0])
    q, q_next = clip.qpos(t), clip.qpos(t + 2 * clip.duration_s)
    shift = 2 * (clip.frame_qpos[-1, :2] - clip.frame_qpos[0, :2])
    np.testing.assert_allclose(q_next[:, :2] - q[:, :2], np.tile(shift, (3, 1)), atol=1e-12)
    np.testing.assert_allclose(q_next[:, 2:], q[:, 2:], atol=1e-12)
    np.testing.assert_allclose(clip.qvel(t + clip.duration_s), clip.qvel(t), atol=1e-12)


def test_time_sampling_hits_frames_and_interpolates(synthetic_clip_path):
    clip = load_clip(synthetic_clip_path)
    np.testing.assert_allclose(clip.qpos(clip.frame_times[:-1]), clip.frame_qpos[:-1], atol=1e-12)
    mid = 0.5 * (clip.frame_times[2] + clip.frame_times[3])
    q = clip.qpos([mid])[0]
    lin = 0.5 * (clip.frame_qpos[2] + clip.frame_qpos[3])
    np.testing.assert_allclose(q[hum.HINGE_QPOS], lin[hum.HINGE_QPOS], atol=1e-12)
    np.testing.assert_allclose(q[hum.ROOT_POS], lin[hum.ROOT_POS], atol=1e-12)
    assert np.linalg.norm(q[hum.ROOT_QUAT]) == pytest.approx(1.0)
    np.testing.assert_allclose(clip.phase([0.0, clip.duration_s / 4]), [0.0, 0.25])


def test_non_looping_clip_clamps(tmp_path):
    clip = load_clip(write_clip(tmp_path / "once.txt", synthetic_frames(), loop="none"))
    assert not clip.loop
    np.testing.assert_allclose(clip.qpos([clip.duration_s + 5.0])[0], clip.frame_qpos[-1], atol=1e-12)
    np.testing.assert_array_equal(clip.qvel([clip.duration_s + 5.0]), 0.0)
    assert clip.phase([10.0])[0] == 1.0


def test_quaternions_are_normalised_on_load(tmp_path):
    frames = np.array(synthetic_frames())
    unit = frames.copy()
    for off in (4, 8, 12, 16, 21, 25, 30, 35, 39):
        unit[:, off:off + 4] /= np.linalg.norm(unit[:, off:off + 4], axis=1, keepdims=True)
    a = load_clip(write_clip(tmp_path / "a.txt", frames.tolist()))
    b = load_clip(write_clip(tmp_path / "b.txt", unit.tolist()))
    np.testing.assert_allclose(a.frame_qpos, b.frame_qpos, atol=1e-12)


def _bad(tmp_path, mutate, loop="wrap"):
    frames = synthetic_frames()
    text = mutate(frames)
    path = tmp_path / "bad.txt"
    path.write_text(text if isinstance(text, str) else json.dumps({"Loop": loop, "Frames": frames}))
    return path


@pytest.mark.parametrize(
    "mutate, frame, words",
    [
        (lambda f: "{not json", None, "expected JSON"),
        (lambda f: f[3].pop(), 3, "expected 44 numbers, found 43"),
        (lambda f: f[2].__setitem__(10, float("nan")), 2, "expected finite values"),
        (lambda f: f[4].__setitem__(slice(8, 12), [0.0, 0.0, 0.0, 0.0]), 4, "non-zero quaternion"),
        (lambda f: f.__delitem__(slice(1, None)), None, "at least 2 frames, found 1"),
        (lambda f: f[1].__setitem__(0, 0.0), 1, "positive frame duration"),
        (lambda f: f[0].__setitem__(5, "x"), 0, "non-number"),
    ],
)
def test_malformed_clips_raise_one_clear_error(tmp_path, mutate, frame, words):
    path = _bad(tmp_path, mutate)
    with pytest.raises(MotionFormatError) as err:
        load_clip(path)
    assert str(path) in str(err.value) and words in str(err.value)
    assert err.value.frame == frame
    if frame is not None:
        assert f"frame {frame}" in str(err.value)


def test_unknown_loop_value(tmp_path):
    path = write_clip(tmp_path / "loop.txt", synthetic_frames(), loop="bounce")
    with pytest.raises(MotionFormatError, match="'Loop' to be one of"):
        load_clip(path)


def test_clip_from_array_matches_file(synthetic_clip_path):
    frames, loop = parse_clip(synthetic_clip_path.read_text())
    a = MotionClip(frames, loop)
    b = load_clip(synthetic_clip_path)
    np.testing.assert_array_equal(a.frame_qpos, b.frame_qpos)


def test_unknown_clip_name_says_where_it_looked():
    from imitate import ClipNotFoundError

    with pytest.raises(ClipNotFoundError, match="no clip 'no_such_clip'"):
        load_clip("no_such_clip")


def test_euler_branch_and_turns_are_chosen_inside_the_hinge_ranges():
    """Of the equivalent XYZ triples (a, b, c), (a + pi, pi - b, c + pi) and their whole-turn
    shifts, the continuous sequence inside the ranges is taken; the rotations are unchanged."""
    from imitate.motion import continuous_euler_xyz

    t = np.linspace(0.0, 1.0, 20)
    principal = np.stack([0.3 + 0.2 * t, 0.2 - 0.3 * t, -0.4 + 0.5 * t], axis=1)
    rotations = Rotation.from_euler("XYZ", principal)
    quats = rotations.as_quat()[:, [3, 0, 1, 2]]  # (w, x, y, z)
    mirror = principal * [1, -1, 1] + np.pi
    for ranges, expected in (
        (np.array([[-1.0, 1.0]] * 3), principal),
        (np.array([[2.5, 4.5], [2.0, 3.5], [2.0, 3.5]]), mirror),
        (np.array([[2.5, 4.5], [2.0, 3.5], [2.0, 3.5]]) - 2 * np.pi, mirror - 2 * np.pi),
        (np.array([[-1.0, 1.0], [-1.0, 1.0], [2 * np.pi - 1, 2 * np.pi + 1]]), principal + [0, 0, 2 * np.pi]),
    ):
        angles = continuous_euler_xyz(quats, ranges)
        np.testing.assert_allclose(angles, expected, atol=1e-9)
        assert ((Rotation.from_euler("XYZ", angles).inv() * rotations).magnitude() < 1e-9).all()


def test_dance_a_reference_leaves_the_hinge_ranges_less_than_the_unranged_euler_angles():
    """The loader's choice (ranges given) beats the plain continuous sequence on a clip whose
    shoulders go overhead (test_hinge_angles_continuous_no_flips checks the rotations)."""
    from imitate import quat
    from imitate.motion import continuous_euler_xyz, yup_to_zup_quat

    clip = classic("dance_a")
    raw = np.array(json.loads(clip.path.read_text())["Frames"])
    joint = next(j for j in hum.SPHERICAL_JOINTS if j.name == "right_shoulder")
    off = DM_SKELETON[joint.name][2]

    local = yup_to_zup_quat(quat.normalize(raw[:, off:off + 4]))
    lo, hi = hum.HINGE_RANGE[list(joint.hinges)].T

    def excess(a):
        return np.sum(np.maximum(lo - a, 0) + np.maximum(a - hi, 0))

    ours = clip.frame_qpos[:, hum.HINGE_QPOS][:, list(joint.hinges)]
    assert excess(ours) < 0.5 * excess(continuous_euler_xyz(local))  # 37 against 533 rad-frames


def test_a_mistyped_clip_name_gets_a_did_you_mean(tmp_path, monkeypatch):
    from imitate.errors import ClipNotFoundError
    from imitate.motion import resolve_clip

    (tmp_path / "my_dance.txt").write_text("{}")
    monkeypatch.setenv("IMITATE_MOTIONS", str(tmp_path))
    with pytest.raises(ClipNotFoundError, match="did you mean 'my_dance'"):
        resolve_clip("my_danse")


def test_an_episode_horizon_is_cut_at_the_end_of_a_clip_that_does_not_loop(tmp_path):
    frames = synthetic_frames(num_frames=10)  # 9 intervals of 1/30 s: 0.3 s
    once = load_clip(write_clip(tmp_path / "once.txt", frames, loop="none"))
    looping = load_clip(write_clip(tmp_path / "loop.txt", frames))
    assert once.episode_horizon_s(5.0) == pytest.approx(9 / 30) and once.episode_horizon_s(0.1) == 0.1
    assert looping.episode_horizon_s(5.0) == 5.0
