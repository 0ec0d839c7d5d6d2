"""Evaluation a user can trust: roll a controller out from phase 0 and measure it.

Definitions (per episode, then mean and std over episodes):
- normalised return: the sum of per-step rewards divided by the horizon in control steps, so
  a fall early costs (1.0 = perfect imitation for the whole horizon);
- survival [s]: time until the episode ended by a fall (the horizon if it never fell);
- endings: how each episode ended: its time [s], clip phase and cause: "survived", or why it
  fell (the fall bodies on the floor, the root dropped below the reference's, a non-finite state);
- joint error [deg]: mean over the steps survived and over the 12 joints of the rotation angle
  between the simulated and reference local joint rotation;
- end-effector error [cm]: mean over the steps survived and the 4 end effectors (feet, hands)
  of the distance between simulated and reference positions relative to the root, in each
  one's heading frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import humanoid as hum
from .config import LOOPING_EPISODE_S, EnvConfig, with_action_noise
from .errors import ConfigError
from .motion import load_clip
from .reward import RewardTerms, end_effector_offsets, joint_angle_errors
from .simulation import Simulation

Controller = Callable[[Simulation], np.ndarray]  # reads sim.obs or the sim's state -> (N, 28)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float

    @classmethod
    def of(cls, values: np.ndarray) -> Stat:
        return cls(float(np.mean(values)), float(np.std(values)))


@dataclass(frozen=True)
class EvalResult:
    episodes: int
    horizon_s: float
    normalised_return: Stat
    survival_s: Stat
    full_horizon: int  # episodes that kept their feet for the whole horizon
    joint_error_deg: Stat
    end_effector_error_cm: Stat
    reward_terms: dict  # term name -> Stat of its per-step mean over the steps survived
    endings: tuple[dict, ...] = ()  # per episode: {"time_s", "phase", "cause"} (cause "survived" or why it fell)

    def to_dict(self) -> dict:
        """JSON-native (lists, not tuples), so it equals itself read back from JSON."""
        return {**asdict(self), "endings": [dict(e) for e in self.endings]}

    @classmethod
    def from_dict(cls, d: dict) -> EvalResult:
        """The EvalResult that to_dict gave d."""
        names = ("normalised_return", "survival_s", "joint_error_deg", "end_effector_error_cm")
        stats = {k: Stat(**d[k]) for k in names}
        return cls(**{**d, **stats, "reward_terms": {k: Stat(**v) for k, v in d["reward_terms"].items()},
                      "endings": tuple(dict(e) for e in d["endings"])})


def evaluate(controller: Controller, config: EnvConfig, *, episodes: int = 1, horizon_s: float | None = None,
             init_noise_rad: float = 0.0, seed: int = 0, nthread: int = 0, action_noise: float = 0.0,
             push_force_n: float = 0.0, push_every_s: float = 2.0, push_duration_s: float = 0.2,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Run `episodes` episodes at once from phase 0 for the horizon (default: 20 s for a
    looping clip, the clip's length otherwise) and measure them (module docstring).

    init_noise_rad: std of Gaussian noise on the starting hinge angles (seeded), so that the
    episodes of a deterministic controller differ; 0 starts every episode on the reference.
    action_noise: std of Gaussian noise added to every executed action (clipped to [-1, 1]).
    push_force_n: every push_every_s, push each humanoid's root horizontally in a random
    direction with this force [N] for push_duration_s (what a learner's states look like).
    progress(steps done, steps) after each control step (a slow expert takes minutes)."""
    clip = load_clip(config.clip)
    if horizon_s is None:
        horizon_s = LOOPING_EPISODE_S if clip.loop else clip.duration_s
    if not horizon_s > 0:
        raise ConfigError(f"evaluate: expected a horizon > 0 s, found {horizon_s}")
    if not clip.loop and horizon_s > clip.duration_s + 1e-9:
        raise ConfigError(f"evaluate: a horizon of {horizon_s:g} s is past the end of {clip.name} "
                          f"({clip.duration_s:.2f} s; it does not loop)")
    for name, value in (("init_noise_rad", init_noise_rad), ("action_noise", action_noise),
                        ("push_force_n", push_force_n)):
        if not value >= 0:
            raise ConfigError(f"evaluate: expected {name} >= 0, found {value}")
    if episodes < 1:
        raise ConfigError(f"evaluate: expected at least 1 episode, found {episodes}")
    config = replace(config, random_start=False, episode_s=horizon_s)
    sim = Simulation(config, episodes, nthread, clip=clip)
    start_at_phase_zero(sim, init_noise_rad, seed)
    steps = max(1, round(horizon_s * config.control_hz))
    alive = np.ones(episodes, bool)
    ret = np.zeros(episodes)
    survived = np.zeros(episodes, int)
    joint_err = np.zeros(episodes)
    end_err = np.zeros(episodes)
    terms = {n: np.zeros(episodes) for n in RewardTerms.NAMES}
    endings: list[dict] = [{}] * episodes
    rng = np.random.default_rng([seed, 1])
    push_steps = max(1, round(push_duration_s * config.control_hz))
    every = max(1, round(push_every_s * config.control_hz))
    root = sim.model.body("root").id
    for step in range(steps):
        if progress:
            progress(step, steps)
        action = controller(sim)
        if action_noise > 0:
            action = with_action_noise(action, action_noise, rng)
        if push_force_n > 0 and step % every == every // 2:
            angle = rng.uniform(0, 2 * np.pi, episodes)
            sim.batch.xfrc_applied[:, root, :2] = push_force_n * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        elif push_force_n > 0 and step % every == every // 2 + push_steps:
            sim.batch.xfrc_applied[:, root] = 0.0
        reward, terminated, _, _ = sim.step(action)
        ending = np.flatnonzero(alive & (terminated | (step == steps - 1)))
        if len(ending):  # the time survived, as survival_s counts it (a fall step does not), and the phase then
            times = (step + ~terminated[ending]) / config.control_hz
            for i, t, phase in zip(ending, times, clip.phase(times), strict=True):
                endings[i] = {"time_s": float(t), "phase": float(phase),
                              "cause": sim.fall_cause(i) if terminated[i] else "survived"}
        now = alive.copy()  # a step that ends in a fall still counts its reward
        ret += np.where(now, reward, 0.0)
        _, sph, rev = joint_angle_errors(sim.sim_pose.qpos, sim.ref_pose.qpos)
        joint_err += np.where(now, np.concatenate([sph, rev], axis=1).mean(axis=1), 0.0)
        dist = np.linalg.norm(end_effector_offsets(sim.sim_pose) - end_effector_offsets(sim.ref_pose), axis=-1)
        end_err += np.where(now, dist.mean(axis=1), 0.0)
        for n in terms:
            terms[n] += np.where(now, getattr(sim.terms, n), 0.0)
        survived += now & ~terminated
        alive &= ~terminated
        if not alive.any():
            break
    if progress:
        progress(steps, steps)
    counted = np.maximum(survived + ~alive, 1)  # steps whose reward counted
    return EvalResult(
        episodes=episodes,
        horizon_s=float(horizon_s),
        normalised_return=Stat.of(ret / steps),
        survival_s=Stat.of(survived / config.control_hz),
        full_horizon=int(np.sum(survived == steps)),
        joint_error_deg=Stat.of(np.degrees(joint_err / counted)),
        end_effector_error_cm=Stat.of(100.0 * end_err / counted),
        reward_terms={n: Stat.of(v / counted) for n, v in terms.items()},
        endings=tuple(endings),
    )


def summarize_endings(endings: tuple[dict, ...]) -> str:
    """The episodes' endings grouped by cause, most common first, e.g.
    '3 survived; 2 neck on the floor (at 0.70 s, phase 0.88)'."""
    groups: dict[str, list[dict]] = {}
    for e in endings:
        groups.setdefault(e["cause"], []).append(e)
    parts = []
    for cause, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        # phases wrap on a looping clip (0.98 and 0.02 are close): their circular mean
        angle = 2 * np.pi * np.array([e["phase"] for e in group])
        phase = (np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) / (2 * np.pi)) % 1.0
        when = "" if cause == "survived" else (f" (at {np.mean([e['time_s'] for e in group]):.2f} s, "
                                               f"phase {phase:.2f})")
        parts.append(f"{len(group)} {cause}{when}")
    return "; ".join(parts)


def start_at_phase_zero(sim: Simulation, init_noise_rad: float = 0.0, seed: int = 0) -> None:
    """Reset every humanoid of sim onto the reference at clip time 0, its hinge angles noised
    by N(0, init_noise_rad^2) [rad] (seeded) so that a deterministic controller's episodes differ."""
    n = sim.num_envs
    sim.reset(np.arange(n), np.zeros(n))
    if init_noise_rad > 0:
        qpos = sim.qpos.copy()
        qpos[:, hum.HINGE_QPOS] += np.random.default_rng(seed).normal(0.0, init_noise_rad, (n, hum.NU))
        sim.set_state(qpos, sim.qvel.copy(), np.zeros(n))


def expert_controller(expert) -> Controller:
    """A Controller from an expert (a callable on simulator state and clip time, or an
    object with label(sim))."""
    from .experts import label

    return lambda sim: label(expert, sim)


def policy_controller(policy) -> Controller:
    """A Controller from a policy (anything with act(obs)): its deterministic action on sim.obs."""
    return lambda sim: policy.act(sim.obs)
