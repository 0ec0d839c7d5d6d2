"""Rendering: an MP4 of the humanoid beside its reference, offscreen on the CPU.

The simulated humanoid is drawn as in the model; the reference pose at the same clip time is
drawn beside it (shifted ``side_offset_m`` to the humanoid's left) in translucent orange, by
adding its geoms to the same scene.  On a machine without a display, imitate selects MuJoCo's
OSMesa backend (``MUJOCO_GL=osmesa``; Debian's libosmesa6); encoding uses imageio-ffmpeg
(``pip install 'imitate[video]'``).
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from .atomic import replaced_on_success
from .config import EnvConfig
from .errors import ConfigError
from .evaluation import Controller
from .motion import load_clip
from .simulation import Simulation

REFERENCE_RGBA = np.array([0.95, 0.55, 0.2, 0.45], dtype=np.float32)


def render_video(controller: Controller, config: EnvConfig, path: str | Path, *, seconds: float = 10.0,
                 width: int = 320, height: int = 240, side_offset_m: float = 1.0, strip_frames: int = 6) -> int:
    """Roll controller out from phase 0 (until a fall or `seconds`) and write an MP4 at the
    control rate; return the number of frames written.  Beside it (PATH with .png), a strip of
    strip_frames frames evenly spaced over the rollout, for a README or a report (0: none)."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError("writing a video needs imageio and imageio-ffmpeg: pip install 'imitate[video]'") from None
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ConfigError(f"video size: expected even width and height >= 16 (H.264), found {width}x{height}")
    clip = load_clip(config.clip)
    sim = Simulation(config, 1, clip=clip)
    sim.reset(np.array([0]), np.zeros(1))
    model = sim.model
    data, ref_data = mujoco.MjData(model), mujoco.MjData(model)
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as exc:  # no GL backend on this machine
        raise ConfigError(f"offscreen rendering is unavailable ({exc}); on Debian: apt-get install libosmesa6, "
                          "and run with MUJOCO_GL=osmesa") from None
    option = mujoco.MjvOption()
    perturb = mujoco.MjvPerturb()
    camera = mujoco.MjvCamera()  # free camera, following the midpoint of the two figures
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.distance, camera.elevation, camera.azimuth = 4.5, -12.0, 120.0
    frames = []
    try:
        for _ in range(max(1, round(seconds * config.control_hz))):
            sim.batch.get_data(0, data)
            mujoco.mj_forward(model, data)
            ref_data.qpos[:] = clip.qpos(sim.ref_time_s)[0]
            ref_data.qpos[1] += side_offset_m  # beside the humanoid, to its left at heading 0
            mujoco.mj_kinematics(model, ref_data)
            camera.lookat[:] = 0.5 * (data.qpos[:3] + ref_data.qpos[:3])
            camera.lookat[2] = 0.8
            renderer.update_scene(data, camera=camera, scene_option=option)
            first = renderer.scene.ngeom
            mujoco.mjv_addGeoms(model, ref_data, option, perturb, mujoco.mjtCatBit.mjCAT_DYNAMIC, renderer.scene)
            for geom in renderer.scene.geoms[first:renderer.scene.ngeom]:
                geom.rgba[:] = REFERENCE_RGBA
            frames.append(renderer.render())
            _, terminated, truncated, _ = sim.step(controller(sim))
            if terminated[0] or truncated[0]:
                break
    finally:
        renderer.close()  # its teardown at interpreter exit would raise otherwise
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(path) as tmp:
        imageio.mimwrite(tmp, frames, fps=config.control_hz, macro_block_size=2)
    if strip_frames > 0:
        picks = np.linspace(0, len(frames) - 1, min(strip_frames, len(frames))).round().astype(int)
        with replaced_on_success(Path(path).with_suffix(".png")) as tmp:
            imageio.imwrite(tmp, np.concatenate([frames[i] for i in picks], axis=1))
    return len(frames)
