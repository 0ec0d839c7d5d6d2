"""What a clip's reference asks of the humanoid that it may not be able to give.

For each clip (default: all the clips imitate finds), from the reference alone (no simulation):
- feet: how far the reference sinks the feet into the floor (the lowest foot per frame);
- ranges: how far the spherical joints' hinge angles lie outside the hinge ranges, which bound
  the servo targets (frames more than 0.05 rad outside; the worst hinge);
- fall rule: the bodies the `clip` fall rule spares (the reference itself puts them on the floor);
- loop: for a looping clip, the jump of the root's velocity from the cycle's end to its start.

Usage: python experiments/clip_feasibility.py [CLIP ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from imitate import humanoid as hum
from imitate.config import clip_fall_bodies
from imitate.motion import list_clips, load_clip


def feasibility(name: str) -> dict:
    clip = load_clip(name)
    times = np.arange(0.0, clip.duration_s, 1.0 / 120.0)
    heights = hum.lowest_point_heights(clip.qpos(times))
    feet = heights[:, [hum.BODY_NAMES.index(b) for b in hum.FEET]].min(axis=1)
    hinges = clip.frame_qpos[:, hum.HINGE_QPOS]
    lo, hi = hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1]
    outside = np.maximum(lo - hinges, 0.0) + np.maximum(hinges - hi, 0.0)
    worst = int(np.argmax(outside.max(axis=0)))
    end_v = clip.qvel(np.array([clip.duration_s - 1e-6]))[0, hum.ROOT_LINVEL]
    start_v = clip.qvel(np.array([0.0]))[0, hum.ROOT_LINVEL]
    return {
        "clip": clip.name,
        "feet_lowest_cm": 100 * feet.min(),
        "feet_sunk_frames": float(np.mean(feet < -0.01)),
        "outside_frames": float(np.mean(outside.max(axis=1) > 0.05)),
        "worst_hinge": f"{hum.HINGE_NAMES[worst]} {outside[:, worst].max():.2f} rad" if outside.any() else "-",
        "spared": [b for b in hum.NON_FOOT_BODIES if b not in clip_fall_bodies(clip)],
        "loop_velocity_jump": float(np.linalg.norm(end_v - start_v)) if clip.loop else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clips", nargs="*", help="clip names or paths (default: all)")
    args = parser.parse_args()
    names = args.clips or [str(info.path) for info in list_clips()]
    print(f"{'clip':16s} {'feet lowest':>11s} {'sunk >1cm':>9s} {'outside':>7s}  {'worst hinge':26s} "
          f"{'loop dv':>8s}  spared by the clip fall rule")
    for name in names:
        f = feasibility(name)
        dv = "-" if f["loop_velocity_jump"] is None else f"{f['loop_velocity_jump']:.2f} m/s"
        print(f"{f['clip']:16s} {f['feet_lowest_cm']:8.1f} cm {100 * f['feet_sunk_frames']:8.0f}% "
              f"{100 * f['outside_frames']:6.0f}%  {f['worst_hinge']:26s} {dv:>8s}  {', '.join(f['spared']) or '-'}")


if __name__ == "__main__":
    main()
