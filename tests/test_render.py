"""Rendering: the MP4 (frames, size), the reference figure beside the humanoid, and the
evaluate command's --video."""

import numpy as np
import pytest

import imitate  # noqa: F401  (first: it selects MuJoCo's OSMesa backend when there is no display)

imageio = pytest.importorskip("imageio.v2", reason="video tests need imageio (pip install 'imitate[video]')")
pytest.importorskip("imageio_ffmpeg", reason="video tests need imageio-ffmpeg (pip install 'imitate[video]')")

import mujoco  # noqa: E402

import imitate.render as render_module  # noqa: E402
from imitate import make_env  # noqa: E402
from imitate.cli import main  # noqa: E402
from imitate.config import EnvConfig  # noqa: E402
from imitate.errors import ConfigError  # noqa: E402
from imitate.evaluation import expert_controller  # noqa: E402
from imitate.experts.pd import PDExpert  # noqa: E402
from imitate.motion import load_clip  # noqa: E402
from imitate.render import render_video  # noqa: E402


def _renderer_available() -> str | None:
    try:
        model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
        mujoco.Renderer(model, 16, 16).close()
    except Exception as exc:  # no GL backend (e.g. no libOSMesa)
        return f"{type(exc).__name__}: {exc}"
    return None


_why = _renderer_available()
if _why:
    pytest.skip(f"offscreen rendering is unavailable here ({_why}); on Debian: apt-get install libosmesa6",
                allow_module_level=True)


@pytest.fixture
def config(synthetic_clip_path):
    return EnvConfig(clip=str(synthetic_clip_path))


@pytest.fixture
def pd(config):
    return expert_controller(PDExpert(load_clip(config.clip), config.action_space))


def steps_until_done(config: EnvConfig, max_steps: int) -> int:
    """Control steps the PD expert takes from phase 0 before the episode ends (at most max_steps),
    by an explicit loop over the single Gymnasium env."""
    expert = PDExpert(load_clip(config.clip), config.action_space)
    env = make_env(config.clip, action_space=config.action_space, random_start=False)
    env.reset(seed=0)
    for k in range(max_steps):
        qpos, qvel = env.state()
        _, _, terminated, truncated, _ = env.step(expert(qpos[None], qvel[None], np.array([k / config.control_hz]))[0])
        if terminated or truncated:
            return k + 1
    return max_steps


def test_video_has_the_frames_and_size_asked_for(tmp_path, config, pd):
    path = tmp_path / "videos" / "out.mp4"
    frames = render_video(pd, config, path, seconds=0.3, width=192, height=144)
    expected = steps_until_done(config, round(0.3 * 30))
    assert frames == expected and expected >= 2
    video = imageio.mimread(path)
    assert len(video) == expected
    assert all(frame.shape == (144, 192, 3) and frame.dtype == np.uint8 for frame in video)
    assert all(frame.std() > 10 for frame in video)  # a scene, not a blank image
    strip = imageio.imread(path.with_suffix(".png"))  # the frames beside one another, for a README
    assert strip.shape == (144, 192 * min(6, expected), 3)


def test_video_size_is_honoured_or_refused(tmp_path, config, pd):
    path = tmp_path / "odd.mp4"
    try:
        render_video(pd, config, path, seconds=1 / 30, width=100, height=76)
    except ConfigError as exc:  # refusing a size the codec cannot take is fine too
        assert "100" in str(exc) and "76" in str(exc)
        return
    assert imageio.mimread(path)[0].shape == (76, 100, 3)


class _MarkingRenderer(mujoco.Renderer):
    """mujoco.Renderer drawing the simulated humanoid (the dynamic geoms update_scene adds)
    pure green, so that its pixels can be found; geoms added afterwards keep their colours."""

    def update_scene(self, data, *args, **kwargs):
        super().update_scene(data, *args, **kwargs)
        for geom in self.scene.geoms[:self.scene.ngeom]:
            if geom.category == mujoco.mjtCatBit.mjCAT_DYNAMIC:
                geom.rgba[:] = (0.0, 1.0, 0.0, 1.0)


def _first_frame(monkeypatch, pd, config, side_offset_m, tmp_path, draw_reference=True) -> np.ndarray:
    """The first frame exactly as rendered (before encoding), the humanoid in green; with or
    without the reference's geoms (the same scene and camera otherwise)."""
    captured = []
    with monkeypatch.context() as m:
        m.setattr(imageio, "mimwrite", lambda path, frames, **kw: (captured.extend(frames), open(path, "wb").close()))
        m.setattr(render_module.mujoco, "Renderer", _MarkingRenderer)
        if not draw_reference:
            m.setattr(render_module.mujoco, "mjv_addGeoms", lambda *args: None)
        render_video(pd, config, tmp_path / "unused.mp4", seconds=1 / 30, width=160, height=120,
                     side_offset_m=side_offset_m, strip_frames=0)
    assert len(captured) == 1
    return np.asarray(captured[0], dtype=np.float64)


def test_reference_is_drawn_beside_the_humanoid(monkeypatch, pd, config, tmp_path):
    """The reference figure is the difference between a frame with it and the same frame
    (same camera) without it: a region about the humanoid's size, orange-tinted, not on the
    humanoid but beside it, on the side given by the sign of side_offset_m.

    (Pushing the reference far away with side_offset_m=100 is no control: the camera follows
    the midpoint of the two figures, so that frame shows neither figure.)"""
    dx = {}
    for offset in (1.0, -1.0):
        with_ref = _first_frame(monkeypatch, pd, config, offset, tmp_path)
        without = _first_frame(monkeypatch, pd, config, offset, tmp_path, draw_reference=False)
        red, green, blue = np.moveaxis(without, 2, 0)
        humanoid = (green - red > 60) & (green - blue > 60)
        reference = np.abs(with_ref - without).max(axis=2) > 30
        assert humanoid.sum() > 100, f"offset {offset}: the humanoid is not in view"
        assert reference.sum() > 0.5 * humanoid.sum(), f"offset {offset}: only {reference.sum()} pixels changed"
        assert (reference & humanoid).sum() < 0.1 * reference.sum()  # not drawn over the humanoid
        diff = with_ref - without
        r, g, b = (diff[..., c][reference].mean() for c in range(3))
        assert r - b > 20 and g - b > 0  # translucent orange (0.95, 0.55, 0.2) over the blue floor
        dx[offset] = (np.nonzero(reference)[1].mean() - np.nonzero(humanoid)[1].mean()) / humanoid.shape[1]
    # beside the humanoid, by a good part of the image width, and mirrored with the offset's sign
    assert abs(dx[1.0]) > 0.05 and abs(dx[-1.0]) > 0.05
    assert np.sign(dx[1.0]) == -np.sign(dx[-1.0])


def test_evaluate_command_writes_a_video(tmp_path, synthetic_clip_path, capsys):
    video = tmp_path / "v.mp4"
    assert main(["evaluate", "--expert", "pd", "--clip", str(synthetic_clip_path), "--episodes", "1",
                 "--seconds", "0.3", "--video", str(video)]) == 0
    assert f"wrote {video}" in capsys.readouterr().out.replace("\n", "")
    frames = imageio.mimread(video)
    assert 1 <= len(frames) <= 9 and frames[0].shape == (240, 320, 3)
