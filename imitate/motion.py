"""DeepMimic motion clips: load, validate, resolve names, and sample reference states by time.

A clip file is JSON: ``{"Loop": "wrap" | "none", "Frames": [[...44 floats...], ...]}``, each
frame ``[duration_s, root_pos(3), root_quat(4), chest(4), neck(4), right_hip(4),
right_knee(1), right_ankle(4), right_shoulder(4), right_elbow(1), left_hip(4), left_knee(1),
left_ankle(4), left_shoulder(4), left_elbow(1)]`` in DeepMimic's Y-up frame, quaternions
(w, x, y, z) local to the parent (the root's global).  ``MotionClip`` holds it converted to the
humanoid's Z-up layout (see ``imitate.humanoid``) and answers for any array of times.

Interpolation is linear in root position and hinge angles and slerp for the root
orientation; velocities are the exact time derivatives of that interpolation (the finite
difference of consecutive frames, constant within a frame interval).  A looping clip repeats
with its root shifted, per cycle, by the horizontal displacement from its first to last frame.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from . import humanoid as hum
from . import quat
from .errors import ClipNotFoundError, MotionFormatError

FRAME_SIZE = 44
LOOP_MODES = ("wrap", "none")
# Offsets of each DeepMimic joint's values within a frame, in hum.JOINTS order.
_JOINT_OFFSETS = (8, 12, 16, 20, 21, 25, 29, 30, 34, 35, 39, 43)
_MIN_QUAT_NORM = 1e-6


def yup_to_zup_vec(v: np.ndarray) -> np.ndarray:
    """DeepMimic (Y-up) vectors (..., 3) to the humanoid's Z-up frame: (x, y, z) -> (x, -z, y)."""
    v = np.asarray(v, dtype=float)
    return np.stack([v[..., 0], -v[..., 2], v[..., 1]], axis=-1)


def yup_to_zup_quat(q: np.ndarray) -> np.ndarray:
    """DeepMimic (Y-up) quaternions (..., 4) to Z-up: (w, x, y, z) -> (w, x, -z, y)."""
    q = np.asarray(q, dtype=float)
    return np.stack([q[..., 0], q[..., 1], -q[..., 3], q[..., 2]], axis=-1)


def continuous_euler_xyz(quats: np.ndarray, ranges: np.ndarray | None = None) -> np.ndarray:
    """Intrinsic XYZ Euler angles (F, 3) [rad] of a sequence of unit quaternions (F, 4),
    continuous across frames: of the two equivalent triples (a, b, c) and
    (a + pi, pi - b, c + pi), each shifted by whole turns, take the one nearest the previous
    frame, so that neither 2*pi jumps nor gimbal flips appear.

    ranges: (3, 2) [rad] the hinges' [lo, hi]; given, the continuous sequence is taken on the
    branch and whole-turn shift (per angle) that leaves the ranges least (summed over frames),
    the first frame's choice on a tie: the servos' targets are clipped to the ranges, so a
    sequence outside them is a reference the humanoid cannot reach."""
    raw = quat.to_euler_xyz(quats)
    out = np.empty_like(raw)
    out[0] = raw[0]
    two_pi = 2.0 * math.pi
    for k in range(1, len(raw)):
        a, b, c = raw[k]
        prev = out[k - 1]
        best, best_dist = None, np.inf
        for cand in (np.array([a, b, c]), np.array([a + math.pi, math.pi - b, c + math.pi])):
            cand = cand + two_pi * np.round((prev - cand) / two_pi)
            dist = np.sum((cand - prev) ** 2)
            if dist < best_dist:
                best, best_dist = cand, dist
        out[k] = best
    if ranges is None:
        return out
    lo, hi = np.asarray(ranges, dtype=float).T
    best, best_excess = out, np.inf
    for branch in (out, out * [1.0, -1.0, 1.0] + [math.pi, math.pi, math.pi]):  # the other triple, frame by frame
        shifted = branch.copy()
        for j in range(3):  # the whole-turn shift of each angle that leaves its range least
            shifts = two_pi * np.array([0, 1, -1, 2, -2, 3, -3])
            excess = [_range_excess(branch[:, j] + d, lo[j], hi[j]) for d in shifts]
            shifted[:, j] += shifts[int(np.argmin(excess))]  # argmin: the first on a tie, no shift first
        total = _range_excess(shifted, lo, hi)
        if total < best_excess - 1e-9:
            best, best_excess = shifted, total
    return best


def _range_excess(angles: np.ndarray, lo, hi) -> float:
    """How far angles lie outside [lo, hi], summed [rad]."""
    return float(np.sum(np.maximum(lo - angles, 0.0) + np.maximum(angles - hi, 0.0)))


@dataclass(frozen=True)
class ClipInfo:
    """Where a clip was found: its name and path, and the source ("motions" or "pybullet")."""

    name: str
    path: Path
    source: str


class MotionClip:
    """A DeepMimic clip converted to the humanoid's coordinates, sampled by time.

    Attributes:
      name: clip name (file stem without the ``humanoid3d_`` prefix).
      path: the file it came from.
      loop: True for "wrap" clips.
      frame_times: (F,) [s] time of each frame from the start.
      frame_qpos: (F, nq) the frames as humanoid qpos (hinge angles continuous).
    """

    def __init__(self, frames: np.ndarray, loop: bool, *, name: str = "clip", path: str | Path = "<array>"):
        """frames: (F, 44) validated DeepMimic frames (see ``load_clip``)."""
        self.name = name
        self.path = Path(path)
        self.loop = loop
        frames = np.asarray(frames, dtype=float)
        durations = frames[:-1, 0]
        self.frame_times = np.concatenate([[0.0], np.cumsum(durations)])
        self.duration_s = float(self.frame_times[-1])

        root_quat = yup_to_zup_quat(quat.normalize(frames[:, 4:8]))
        for k in range(1, len(root_quat)):  # take the short way between frames
            root_quat[k] = quat.same_hemisphere(root_quat[k], root_quat[k - 1])
        qpos = np.zeros((len(frames), hum.NQ))
        qpos[:, hum.ROOT_POS] = yup_to_zup_vec(frames[:, 1:4])
        qpos[:, hum.ROOT_QUAT] = root_quat
        hinges = qpos[:, hum.HINGE_QPOS]
        for joint, off in zip(hum.JOINTS, _JOINT_OFFSETS, strict=True):
            if joint.dof == 1:
                hinges[:, joint.hinges[0]] = frames[:, off]
            else:
                local = yup_to_zup_quat(quat.normalize(frames[:, off:off + 4]))
                hinges[:, list(joint.hinges)] = continuous_euler_xyz(local, hum.HINGE_RANGE[list(joint.hinges)])
        self.frame_qpos = qpos

        # Velocity of each frame interval k -> k+1 (constant within it): (F-1, nv).
        dt = durations[:, None]
        seg = np.zeros((len(frames) - 1, hum.NV))
        seg[:, hum.ROOT_LINVEL] = (qpos[1:, hum.ROOT_POS] - qpos[:-1, hum.ROOT_POS]) / dt
        # local-frame angular velocity, as MuJoCo's free joint: conj(q_k) * q_{k+1}
        dq = quat.mul(quat.conj(root_quat[:-1]), root_quat[1:])
        seg[:, hum.ROOT_ANGVEL] = quat.to_rotvec(dq) / dt
        seg[:, hum.HINGE_QVEL] = (qpos[1:, hum.HINGE_QPOS] - qpos[:-1, hum.HINGE_QPOS]) / dt
        self._segment_qvel = seg

        offset = qpos[-1, hum.ROOT_POS] - qpos[0, hum.ROOT_POS]
        offset[2] = 0.0
        self.cycle_offset = offset if loop else np.zeros(3)

    @property
    def num_frames(self) -> int:
        return len(self.frame_times)

    @property
    def fps(self) -> float:
        """Mean frame rate [Hz]."""
        return (self.num_frames - 1) / self.duration_s

    @property
    def distance_per_cycle_m(self) -> float:
        """Horizontal distance [m] the root travels from the first to the last frame."""
        d = self.frame_qpos[-1, hum.ROOT_POS] - self.frame_qpos[0, hum.ROOT_POS]
        return float(np.hypot(d[0], d[1]))

    def _locate(self, times: np.ndarray):
        """Cycle index (T,), frame interval index (T,) and fraction in it (T,) of each time."""
        t = np.atleast_1d(np.asarray(times, dtype=float))
        if not np.all(np.isfinite(t)):
            raise ValueError(f"times must be finite; found {t[~np.isfinite(t)][:3]}")
        if self.loop:
            cycle = np.floor(t / self.duration_s)
            tau = t - cycle * self.duration_s
        else:
            cycle = np.zeros_like(t)
            tau = np.clip(t, 0.0, self.duration_s)
        k = np.clip(np.searchsorted(self.frame_times, tau, side="right") - 1, 0, self.num_frames - 2)
        frac = (tau - self.frame_times[k]) / (self.frame_times[k + 1] - self.frame_times[k])
        return cycle, k, np.clip(frac, 0.0, 1.0)

    def episode_horizon_s(self, horizon_s: float) -> float:
        """The part of a horizon [s] that an episode from phase 0 can run: all of it for a looping
        clip, at most the clip's length otherwise (it ends where it ends)."""
        return horizon_s if self.loop else min(horizon_s, self.duration_s)

    def phase(self, times: np.ndarray) -> np.ndarray:
        """Phase in [0, 1) of each time (T,) within the clip's cycle (clamped for "none")."""
        t = np.atleast_1d(np.asarray(times, dtype=float))
        if self.loop:
            return np.mod(t, self.duration_s) / self.duration_s
        return np.clip(t / self.duration_s, 0.0, 1.0)

    def qpos(self, times: np.ndarray) -> np.ndarray:
        """Reference qpos (T, nq) at times (T,) [s]."""
        cycle, k, frac = self._locate(times)
        q0, q1 = self.frame_qpos[k], self.frame_qpos[k + 1]
        out = q0 + frac[:, None] * (q1 - q0)
        out[:, hum.ROOT_QUAT] = quat.slerp(q0[:, hum.ROOT_QUAT], q1[:, hum.ROOT_QUAT], frac)
        out[:, hum.ROOT_POS] += cycle[:, None] * self.cycle_offset
        return out

    def qvel(self, times: np.ndarray) -> np.ndarray:
        """Reference qvel (T, nv) at times (T,) [s]; zero past the end of a "none" clip."""
        t = np.atleast_1d(np.asarray(times, dtype=float))
        _, k, _ = self._locate(t)
        out = self._segment_qvel[k].copy()
        if not self.loop:
            out[(t < 0.0) | (t > self.duration_s)] = 0.0
        return out

    def body_positions(self, times: np.ndarray) -> np.ndarray:
        """Reference positions (T, len(hum.BODY_NAMES), 3) [m] of the named bodies' origins."""
        return hum.body_positions(self.qpos(times))

    @cached_property
    def info(self) -> dict:
        """Summary figures for tables and JSON."""
        return {
            "name": self.name,
            "frames": self.num_frames,
            "fps": round(self.fps, 3),
            "duration_s": round(self.duration_s, 4),
            "loop": self.loop,
            "distance_per_cycle_m": round(self.distance_per_cycle_m, 4),
        }


def parse_clip(text: str, path: str | Path = "<string>") -> tuple[np.ndarray, bool]:
    """Validate a clip file's text; return its frames (F, 44) and whether it loops.

    Raises MotionFormatError naming the file, the frame and what was wrong.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MotionFormatError(path, f"expected JSON, found a syntax error: {exc}") from None
    if not isinstance(doc, dict) or "Frames" not in doc:
        raise MotionFormatError(path, "expected a JSON object with a 'Frames' list")
    loop = doc.get("Loop", "wrap")
    if loop not in LOOP_MODES:
        raise MotionFormatError(path, f"expected 'Loop' to be one of {LOOP_MODES}, found {loop!r}")
    raw = doc["Frames"]
    if not isinstance(raw, list) or len(raw) < 2:
        n = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise MotionFormatError(path, f"expected at least 2 frames, found {n}")
    frames = np.empty((len(raw), FRAME_SIZE))
    for i, frame in enumerate(raw):
        if not isinstance(frame, list) or len(frame) != FRAME_SIZE:
            n = len(frame) if isinstance(frame, list) else type(frame).__name__
            raise MotionFormatError(path, f"expected {FRAME_SIZE} numbers, found {n}", frame=i)
        try:
            frames[i] = np.array(frame, dtype=float)
        except (TypeError, ValueError):
            raise MotionFormatError(path, "expected numbers only, found a non-number", frame=i) from None
        bad = np.flatnonzero(~np.isfinite(frames[i]))
        if bad.size:
            found = frames[i, bad[0]]
            raise MotionFormatError(path, f"expected finite values, found {found} at index {bad[0]}", frame=i)
        for off in (4,) + tuple(o for o, j in zip(_JOINT_OFFSETS, hum.JOINTS, strict=True) if j.dof == 3):
            norm = np.linalg.norm(frames[i, off:off + 4])
            if norm < _MIN_QUAT_NORM:
                raise MotionFormatError(
                    path, f"expected a non-zero quaternion at indices {off}..{off + 3}, found length {norm:.3g}",
                    frame=i
                )
        if i < len(raw) - 1 and frames[i, 0] <= 0.0:
            raise MotionFormatError(path, f"expected a positive frame duration, found {frames[i, 0]}", frame=i)
    return frames, loop == "wrap"


def load_clip(name_or_path: str | Path) -> MotionClip:
    """Load a clip by path, or by name from ``motion_dirs()`` (e.g. ``load_clip("walk")``)."""
    path = resolve_clip(name_or_path)
    frames, loop = parse_clip(path.read_text(), path)
    return MotionClip(frames, loop, name=clip_name(path), path=path)


def clip_name(path: Path) -> str:
    stem = Path(path).stem
    return stem[len("humanoid3d_"):] if stem.startswith("humanoid3d_") else stem


def pybullet_motion_dir() -> Path | None:
    """pybullet_data's motions folder, if pybullet is installed."""
    try:
        root = resources.files("pybullet_data")
    except ModuleNotFoundError:
        return None
    folder = Path(str(root)) / "data" / "motions"
    return folder if folder.is_dir() else None


def motion_dirs() -> list[tuple[Path, str]]:
    """Folders searched for clips by name, in order, with their source label:
    $IMITATE_MOTIONS (os.pathsep-separated), ./motions, the project's motions/, pybullet's."""
    dirs: list[tuple[Path, str]] = []
    for entry in os.environ.get("IMITATE_MOTIONS", "").split(os.pathsep):
        if entry:
            dirs.append((Path(entry), "motions"))
    dirs.append((Path.cwd() / "motions", "motions"))
    dirs.append((Path(__file__).resolve().parent.parent / "motions", "motions"))
    pyb = pybullet_motion_dir()
    if pyb is not None:
        dirs.append((pyb, "pybullet"))
    seen, unique = set(), []
    for d, src in dirs:
        key = d.resolve()
        if key not in seen and d.is_dir():
            seen.add(key)
            unique.append((d, src))
    return unique


def resolve_clip(name_or_path: str | Path) -> Path:
    """Path of a clip given as a file path or a name ("walk" or "humanoid3d_walk")."""
    p = Path(name_or_path)
    if p.suffix and p.is_file():
        return p
    name = clip_name(p)
    tried = []
    for folder, _ in motion_dirs():
        for candidate in (folder / f"{name}.txt", folder / f"humanoid3d_{name}.txt"):
            tried.append(str(candidate))
            if candidate.is_file():
                return candidate
    hint = "" if pybullet_motion_dir() else " (pybullet is not installed: pip install 'imitate[clips]')"
    known = sorted({clip_name(f) for folder, _ in motion_dirs() for f in folder.glob("*.txt")})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?{hint}"
    raise ClipNotFoundError(f"no clip {str(name_or_path)!r}: looked for {', '.join(tried) or 'nothing'}{hint}")


def list_clips() -> list[ClipInfo]:
    """Every clip findable by name, the first of each name winning (motions/ before pybullet)."""
    found: dict[str, ClipInfo] = {}
    for folder, source in motion_dirs():
        for path in sorted(folder.glob("*.txt")):
            name = clip_name(path)
            if source == "pybullet" and not path.stem.startswith("humanoid3d_"):
                continue  # pybullet also ships clips of other characters (laikago)
            found.setdefault(name, ClipInfo(name, path, source))
    return sorted(found.values(), key=lambda c: c.name)
