"""The search expert: PD servos plus a short-horizon search on MuJoCo rollouts.

A PD expert tracks joints but cannot balance.  This one, at each control step and from the
exact simulator state (the full integration state row of mujoco.batch, warm-start included, so
rollouts reproduce the simulator bit for bit; ``planning_hz`` plans on a coarser timestep for
less), samples K sequences of PD-target offsets around the reference over a horizon of H
control steps, rolls them all out in one batched call (threads across rollouts), scores each
with a tracking cost consistent with the env's reward, and returns the first step of the best.
The plan is kept per humanoid and, shifted by a step, is the next decision's nominal candidate
(warm start); a humanoid with no plan yet (just reset) gets ``cold_iterations`` search
iterations instead of one.

Candidates: 0 is the warm-start plan itself, 1 is the plain reference (zero offsets), the rest
add Gaussian noise (``noise_rad``) to the warm-start plan (``antithetic``: in mirrored pairs, +e
and -e, whose odd moments cancel in the MPPI mean): independent at every step, or drawn at
``knots`` points of the horizon and interpolated linearly (a smaller space to search, so the
cost-weighted optimum, the label, varies less with the sampling noise); ``noise_decay`` shrinks
the noise of each further search iteration.  Cost per candidate, summed over the
horizon (reference at each step's end time): ``pose_weight`` x the reward's weighted squared
joint angles (root orientation included) + ``end_effector_weight`` x squared end-effector
offsets relative to the root + ``root_position_weight`` x squared horizontal root offset +
``root_height_weight`` x squared height error + ``offset_weight`` x the squared offsets
themselves (so that joints which barely matter to the cost stay near the reference instead of
drifting with the sampling noise: smoother labels), plus ``fall_penalty`` x (1 + the fraction
of the horizon left) at the first step where a fall body touches the floor or the root drops.

A humanoid without a plan starts from the nominal offsets: none (the reference's own targets),
or, given ``nominal_targets`` (a trajectory of servo targets the simulator performs from phase 0,
as the tracking expert reconstructs), that trajectory's targets at the horizon's steps: the
"guided" expert.  Dynamic clips need targets far from the reference's that a 0.1 rad search
around them does not find (run falls at 0.57 s), and the tracking expert's linear feedback
around the trajectory holds only near it (roll: 1.1 s); searched around, the trajectory carries
both through 5 s (docs/search_expert.md).

Without a warm start (``warm_start=False``) every decision is a cold search whose noise draws
are the same at every decision (common random numbers), and with ``label="mppi"`` its
iterations re-centre on the cost-weighted mean: the label is then a smooth function of the
state and time alone.  A learner sees only the state; with a warm start, the label also
depends on the plan's history (its random drift), which no observation shows.

Labels: the first step of the best candidate (``label="best"``), or the cost-weighted mean of the
candidates' first steps (``label="mppi"``: less sampling noise in joints that barely matter);
the plan kept for the warm start is the best either way.  In ``pd_target`` space the label is
the chosen servo target; in ``torque`` space the torque the servo
would apply at the current state for that target.  Noise is drawn from a generator keyed by
(seed, key, decision count of that key), so labelling states one by one or in a batch gives the
same labels.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import mujoco
import numpy as np
from mujoco.batch import Batch

from .. import humanoid as hum
from ..config import EnvConfig, fallen, target_action
from ..errors import ConfigError
from ..motion import MotionClip
from ..options import setting
from ..reward import Pose, end_effector_offsets, pose_error
from ..simulation import warnings_to_log


@dataclass(frozen=True)
class SearchConfig:
    candidates: int = setting(32, "search: sequences sampled per decision (K), the nominal and the reference included")
    horizon: int = setting(15, "search: control steps per rollout (H; 15 is 0.5 s at 30 Hz)")
    noise_rad: float = setting(0.1, "search: std of the target offsets' sampling noise [rad]")
    iterations: int = setting(1, "search: searches per decision with a warm start")
    cold_iterations: int = setting(3, "search: searches per decision without one (after a reset, or every decision "
                                      "without a warm start)")
    # False: every decision is a cold search with the same noise draws (common random numbers), so
    # the label is a function of the state and time alone, not of the plan history: a learner that
    # sees only the state can fit it.  (With a warm start the plan's drift is invisible to it.)
    warm_start: bool = setting(True, "keep each humanoid's plan, shifted a step, as the next decision's nominal; "
                                     "without it every decision searches afresh with the same noise draws, so the "
                                     "label is a function of the state (learnable), at the cost of its cold "
                                     "iterations")
    pose_weight: float = 1.0
    end_effector_weight: float = 10.0
    root_position_weight: float = 1.0
    root_height_weight: float = 10.0
    offset_weight: float = 0.2  # x the squared offsets [rad^2]: keeps joints that barely matter near the reference
    fall_penalty: float = 1000.0
    label: str = setting("best", "search: the best candidate's first step, or the cost-weighted mean of all "
                                 "(mppi: smoother)", choices=("best", "mppi"))
    temperature: float = setting(0.1, "search, mppi labels: weights exp(-(cost - min) / (T (median - min))); a "
                                      "higher T averages more candidates: smaller, more learnable corrections that "
                                      "balance less")
    # 0: independent noise at every step of the horizon; M >= 1: noise drawn at M knots spread
    # evenly over the horizon and interpolated linearly (1: one constant offset), so the search
    # samples a smaller space and its optimum (the label) is less noisy.  noise_rad is then the
    # std at the knots (between two knots it is smaller: noise_rad / sqrt(2) midway)
    knots: int = setting(0, "search: draw the offsets' noise at this many knots over the horizon, interpolated "
                            "linearly (0: at every step); fewer dimensions to search, smoother labels")
    noise_decay: float = setting(1.0, "search: each further search iteration's noise is this times the last one's")
    # antithetic: the noisy candidates come in mirrored pairs (plan + e, plan - e), so the noise's
    # odd moments cancel in the cost-weighted mean: the same rollouts give a label that varies less
    # with the draws (the sampling noise a learner cannot tell from feedback)
    antithetic: bool = setting(False, "search: draw the noisy candidates in mirrored pairs (+e, -e) around the plan: "
                                      "less sampling noise in the label for the same rollouts")
    seed: int = 0
    nthread: int = 0  # rollout threads; 0: all cores
    # physics rate of the planner's rollouts [Hz]; None: the env's (rollouts reproduce the
    # simulator bit for bit).  Lower (a multiple of the control rate, e.g. 300 against the env's
    # 600) costs proportionally less per decision: the search is all physics.  The plan is then
    # made on a slightly different model than the one that executes it (model predictive control)
    planning_hz: float | None = setting(None, "search: physics rate of the planner's rollouts [Hz] (None: the "
                                              "env's, exact); 300 halves the cost of a decision, 150 quarters it")

    def __post_init__(self):
        if self.candidates < 2 or self.horizon < 1 or self.iterations < 1 or self.cold_iterations < 1:
            raise ConfigError(f"SearchConfig: candidates >= 2, horizon, iterations, cold_iterations >= 1; found {self}")
        if not self.noise_rad >= 0:
            raise ConfigError(f"SearchConfig.noise_rad must be >= 0; found {self.noise_rad}")
        if not (isinstance(self.knots, int) and not isinstance(self.knots, bool) and 0 <= self.knots <= self.horizon
                and 0 < self.noise_decay <= 1):
            raise ConfigError(f"SearchConfig: 0 <= knots <= horizon ({self.horizon}) and 0 < noise_decay <= 1; "
                              f"found knots={self.knots}, noise_decay={self.noise_decay}")
        if not self.temperature > 0:
            raise ConfigError(f"SearchConfig.temperature must be > 0; found {self.temperature}")
        if self.planning_hz is not None and not self.planning_hz > 0:
            raise ConfigError(f"SearchConfig.planning_hz must be > 0 or None; found {self.planning_hz}")


# The search behind DAgger's labels (`--search-label mppi --search-cold --search-knots 4
# --search-temperature 0.3`): a cold search with the same noise draws at every decision, the
# offsets drawn at 4 knots, the label the cost-weighted mean at temperature 0.3, so the label is a
# smooth function of the state and time that a learner can fit (docs/search_expert.md: "A humanoid
# that walks from DAgger alone").
DAGGER_LABELS = SearchConfig(warm_start=False, label="mppi", knots=4, temperature=0.3)
# imitate learn's: those labels with the planner at 150 Hz (a quarter of the physics) and 64
# candidates (twice the physics): a label's sampling noise, which a learner cannot tell from
# feedback, is then smaller; on walk its DAgger learner walked 26 of 30 episodes at round 3, where
# 32 candidates' walked 0 of 10 (docs/search_expert.md)
LEARN_LABELS = replace(DAGGER_LABELS, planning_hz=150.0, candidates=64)
# the guided expert's (imitate.experts.make_expert("guided")): the DAgger labels at the env's own
# physics rate, on which its reconstructed trajectory is feasible (run, 2 x 5 s: 2 of 2 whole at
# 600 Hz, 1 of 2 at 300 Hz, 0 at 150 Hz; docs/search_expert.md)
GUIDED_LABELS = DAGGER_LABELS
# the named SearchConfigs the command line's --search-preset chooses from
PRESETS = {"plain": SearchConfig(), "dagger": DAGGER_LABELS, "learn": LEARN_LABELS}


def periodic_targets(clip: MotionClip, env_config: EnvConfig, targets: np.ndarray, min_steps: int = 0) -> np.ndarray:
    """Servo targets (max(T, min_steps), 28) [rad] of a looping clip's trajectory (T, 28) made
    periodic: the reference's targets (clipped to the hinge ranges) plus the trajectory's offsets
    from them averaged over its cycles in each phase bin (round(cycle / control dt) bins), for as
    many control steps as the trajectory has, or min_steps if more.  Target k is held over control
    step k, so it is compared with the reference at (k + 1) dt, as ``SearchExpert.nominal`` does.
    Why: a reconstructed trajectory's cycles differ (run: 0.09 rad RMS between cycles at the same
    phase), and a learner that sees the phase, not the cycle, cannot fit labels that follow them.
    Past the trajectory's end the phase means go on (a reconstruction that gave up part-way still
    guides the whole horizon); a phase bin it never reached gets the offsets interpolated around
    the cycle between the nearest bins it did (dance_a, a trajectory of 0.93 of a cycle: a fall at
    phase 0.94 of its 8th cycle where those bins kept the reference's own targets)."""
    targets = np.asarray(targets, dtype=float)
    dt, cycle = env_config.control_dt, clip.duration_s
    bins = max(1, round(cycle / dt))

    def phase_bins(times):
        return np.rint((times % cycle) / cycle * bins).astype(int) % bins

    def reference(times):
        return np.clip(clip.qpos(times)[:, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])

    times = dt * np.arange(1, len(targets) + 1)
    which = phase_bins(times)  # (T,) each step's phase bin
    counts = np.bincount(which, minlength=bins)
    sums = np.zeros((bins, hum.NU))
    np.add.at(sums, which, targets - reference(times))
    means = sums / np.maximum(counts, 1)[:, None]
    reached = np.flatnonzero(counts)
    if 0 < len(reached) < bins:  # the bins never reached: linear in the phase, around the cycle
        missing = np.flatnonzero(counts == 0)
        for j in range(hum.NU):
            means[missing, j] = np.interp(missing, reached, means[reached, j], period=bins)
    out_times = dt * np.arange(1, max(len(targets), min_steps) + 1)
    return reference(out_times) + means[phase_bins(out_times)]


def guided_targets(clip: MotionClip, env_config: EnvConfig, targets: np.ndarray, min_steps: int = 0) -> np.ndarray:
    """The servo targets the guided expert searches around, from a reconstructed trajectory's
    (T, 28) [rad]: for a looping clip made periodic over max(T, min_steps) control steps
    (``periodic_targets``; on run and walk, 2 x 5 s, it performed as well or better: return 0.777
    against 0.753, 0.904 against 0.858); otherwise as they are (T, 28), min_steps unused."""
    return periodic_targets(clip, env_config, targets, min_steps) if clip.loop else np.asarray(targets, dtype=float)


class SearchExpert:
    """``expert.label(sim) -> (N, 28)`` for every humanoid of an imitate Simulation, or
    ``expert.label_states(states, times, keys)`` for raw integration-state rows."""

    def __init__(self, clip: MotionClip, env_config: EnvConfig, config: SearchConfig = SearchConfig(),
                 nominal_targets: np.ndarray | None = None):
        """nominal_targets (T, 28) [rad]: servo targets that the simulator performs from phase 0,
        target k held over control step k (a reconstructed trajectory: the tracking expert's
        ``ctrl``); a cold search then starts from them instead of the reference's (``nominal``)."""
        self.clip, self.env_config, self.config = clip, env_config, config
        self.nominal_targets = None
        if nominal_targets is not None:
            self.nominal_targets = np.asarray(nominal_targets, dtype=float)
            if self.nominal_targets.ndim != 2 or self.nominal_targets.shape[1] != hum.NU \
                    or not np.isfinite(self.nominal_targets).all():
                raise ConfigError(f"search expert: expected finite nominal targets of shape (T, {hum.NU}), found "
                                  f"shape {self.nominal_targets.shape}")
        planning_hz = config.planning_hz or env_config.physics_hz
        try:  # EnvConfig checks the rate is a whole multiple of the control rate
            self.substeps = replace(env_config, physics_hz=planning_hz).substeps  # physics steps per control step
        except ConfigError:
            raise ConfigError(f"SearchConfig.planning_hz must be a multiple of the control rate "
                              f"({env_config.control_hz} Hz); found {planning_hz}") from None
        self.model = hum.load_model("pd_target", planning_hz)  # planning drives the servos
        fall_sensors = hum.fall_sensor_names(env_config.fall_body_names(clip))
        self._fall_ids = np.array([self.model.sensor(s).adr[0] for s in fall_sensors], dtype=int)
        self._body_ids = np.array([hum.body_id(b) for b in hum.BODY_NAMES])
        self._planner: Batch | None = None
        self.plans: dict = {}  # key -> (H, 28) offsets [rad]
        self._decisions: dict = {}  # key -> decisions made
        self.last_costs: np.ndarray | None = None  # (n, K) costs of the last search iteration
        self.last_plans: np.ndarray | None = None  # (n, H, 28) offsets [rad]: the last labels' plans
        self.seconds_per_decision = float("nan")
        self.reconstructed_s: float | None = None  # the guided expert's: how far its trajectory goes [s]

    # ----- the expert interface ---------------------------------------------------------
    def label(self, sim) -> np.ndarray:
        """Labels (N, 28) for the humanoids of sim, from their exact states; a humanoid that was
        just reset (sim.steps == 0) starts a new plan."""
        keys = sim.env_ids
        for k in keys[sim.steps == 0]:
            self.plans.pop(int(k), None)
        return self.label_states(np.array(sim.batch.state), sim.ref_time_s.copy(), keys)

    def provenance(self) -> dict:
        import hashlib
        from dataclasses import asdict

        out = {"kind": "search", "action_space": self.env_config.action_space, **asdict(self.config)}
        if self.nominal_targets is not None:  # which trajectory it searched around
            out["nominal"] = {"steps": len(self.nominal_targets),
                              "sha256": hashlib.sha256(self.nominal_targets.tobytes()).hexdigest()[:16]}
        return out

    def reset(self) -> None:
        self.plans.clear()
        self._decisions.clear()

    def label_states(self, states: np.ndarray, times: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Labels (n, 28) for integration-state rows (n, nstate) at clip times (n,); keys (n,)
        name each state's plan (a humanoid, or a trajectory being relabelled in order)."""
        start = time.perf_counter()
        states = np.atleast_2d(states)
        n = len(states)
        keys = [int(k) for k in keys]
        warm = self.config.warm_start
        if warm:
            cold = np.array([k not in self.plans for k in keys])
            nominal = self.nominal(np.asarray(times, float))
            plans = np.stack([self.plans.get(k, nominal[i]) for i, k in enumerate(keys)])
            rngs = [np.random.default_rng([self.config.seed, k, self._decisions.get(k, 0)]) for k in keys]
        else:  # a cold search from the nominal offsets, with the same noise draws for every state: drawn once
            cold = np.ones(n, bool)
            plans = self.nominal(np.asarray(times, float))
            shared = np.random.default_rng(self.config.seed)
        first = plans[:, 0].copy()  # the offsets of the step to take now
        searches = np.where(cold, self.config.cold_iterations, self.config.iterations)
        for it in range(int(searches.max())):
            rows = np.flatnonzero(searches > it)
            row_rngs = [rngs[i] for i in rows] if warm else [shared]
            candidates = self._candidates(plans[rows], row_rngs, self.config.noise_decay ** it)
            costs = self.costs(states[rows], times[rows], candidates)
            plans[rows] = candidates[np.arange(len(rows)), np.argmin(costs, axis=1)]
            first[rows] = plans[rows, 0]
            if self.config.label == "mppi":  # a cost-weighted mean of the first steps: less sampling noise
                lo = costs.min(axis=1, keepdims=True)
                scale = self.config.temperature * (np.median(costs, axis=1, keepdims=True) - lo) + 1e-9
                weights = np.exp(-(costs - lo) / scale)
                weights /= weights.sum(axis=1, keepdims=True)
                # plain sums, not einsum or BLAS: their blocking and threads may depend on the batch,
                # and a label must not depend on which other states it was computed with (Ray workers)
                first[rows] = np.sum(weights[:, :, None] * candidates[:, :, 0], axis=1)
                if not warm:  # re-centre on the weighted mean: smooth in the state, unlike the best
                    plans[rows] = np.sum(weights[:, :, None, None] * candidates, axis=1)
            self.last_costs = costs
        self.last_plans = plans.copy()
        self.last_plans[:, 0] = first  # a plan starts with its label (a warm MPPI search keeps the best plan)
        qpos = states[:, 1:1 + hum.NQ]  # integration state: time, qpos, qvel, ...
        target = self.clip.qpos(times + self.env_config.control_dt)[:, hum.HINGE_QPOS] + first
        if warm:
            for i, k in enumerate(keys):  # the next decision's warm start: the plan shifted by one step
                self.plans[k] = np.concatenate([plans[i, 1:], plans[i, -1:]])
                self._decisions[k] = self._decisions.get(k, 0) + 1
        self.seconds_per_decision = (time.perf_counter() - start) / n
        return target_action(target, qpos, self.env_config.action_space)

    def planned_actions(self, step: int, qpos: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Actions (n, 28) in [-1, 1] that the plans of the last labelled states (``last_plans``)
        take at their control step `step` (0: the labels' own step), for humanoids at positions
        qpos (n, nq) and clip times (n,) [s]: where following the plans for `step` steps took them."""
        if not 0 <= step < self.config.horizon:
            raise ConfigError(f"planned_actions: step must be in [0, {self.config.horizon}); found {step}")
        target = self.clip.qpos(np.asarray(times, float) + self.env_config.control_dt)[:, hum.HINGE_QPOS]
        return target_action(target + self.last_plans[:, step], qpos, self.env_config.action_space)

    # ----- the search -------------------------------------------------------------------
    def nominal(self, times: np.ndarray) -> np.ndarray:
        """The offsets (n, H, 28) [rad] from the reference's targets (clipped to the hinge ranges)
        that a cold search starts from, for states at clip times (n,): none, or with nominal
        targets, theirs at the horizon's control steps (none past their end)."""
        n, h = len(times), self.config.horizon
        if self.nominal_targets is None:
            return np.zeros((n, h, hum.NU))
        dt = self.env_config.control_dt
        step = np.rint(times * self.env_config.control_hz).astype(int)[:, None] + np.arange(h)  # (n, H)
        ref = self.clip.qpos((times[:, None] + dt * np.arange(1, h + 1)).ravel()).reshape(n, h, hum.NQ)
        ref = np.clip(ref[:, :, hum.HINGE_QPOS], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
        inside = (step >= 0) & (step < len(self.nominal_targets))
        held = self.nominal_targets[np.clip(step, 0, len(self.nominal_targets) - 1)]
        return np.where(inside[..., None], held - ref, 0.0)

    def _candidates(self, plans: np.ndarray, rngs, scale: float = 1.0) -> np.ndarray:
        """(n, K, H, 28): the warm-start plan, the reference, and noisy copies of the plan (noise
        std noise_rad x scale, at every step or at the knots; in mirrored pairs if antithetic);
        one generator per plan, or one whose draws every plan shares."""
        k, h, m = self.config.candidates, self.config.horizon, self.config.knots or self.config.horizon
        std = self.config.noise_rad * scale
        if self.config.antithetic:  # candidates 2, 3, ...: e_1, ..., e_P, -e_1, ..., -e_P (cut to K)
            pairs = (k - 1) // 2
            draws = [rng.normal(0.0, std, (pairs, m, hum.NU)) for rng in rngs]
            noise = np.stack([np.concatenate([np.zeros((2, m, hum.NU)), e, -e])[:k] for e in draws])
        else:
            noise = np.stack([rng.normal(0.0, std, (k, m, hum.NU)) for rng in rngs])
        if m < h:
            weights = knot_weights(h, m)  # plain sums (the labels' comment in label_states: why)
            noise = np.sum(weights[None, None, :, :, None] * noise[:, :, None], axis=3)
        out = plans[:, None] + noise  # (n, K, H, 28), noise broadcast if shared
        out[:, 0] = plans
        out[:, 1] = 0.0
        return out

    def costs(self, states: np.ndarray, times: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Tracking cost (n, K) of rolling out each candidate offset sequence (n, K, H, 28)
        from each state (n, nstate) at clip time (n,), all in one batched rollout."""
        with warnings_to_log():  # an unstable candidate is a fall, scored as one: no print
            return self._costs(states, times, candidates)

    def _costs(self, states: np.ndarray, times: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        cfg, dt = self.config, self.env_config.control_dt
        n, k, h, _ = candidates.shape
        planner = self._batch(n * k)
        planner.state[:] = np.repeat(states, k, axis=0)
        step_times = times[:, None] + dt * np.arange(1, h + 1)  # (n, H): the end of each step
        ref_q = self.clip.qpos(step_times.ravel()).reshape(n, h, hum.NQ)
        ref_v = self.clip.qvel(step_times.ravel()).reshape(n, h, hum.NV)
        ref_body = hum.body_positions(ref_q.reshape(-1, hum.NQ)).reshape(n, h, -1, 3)
        targets = np.clip(ref_q[:, None, :, hum.HINGE_QPOS] + candidates, hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
        cost = np.zeros(n * k)
        down = np.zeros(n * k, bool)  # fallen earlier in the horizon
        for step in range(h):
            planner.ctrl[:] = targets[:, :, step].reshape(n * k, hum.NU)
            planner.step(nstep=self.substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)
            qpos = planner.qpos
            rq = np.repeat(ref_q[:, step], k, axis=0)
            sim = Pose(qpos, planner.qvel, planner.xpos[:, self._body_ids], None)
            ref = Pose(rq, np.repeat(ref_v[:, step], k, axis=0), np.repeat(ref_body[:, step], k, axis=0), None)
            end = end_effector_offsets(sim) - end_effector_offsets(ref)
            d_root = qpos[:, :3] - rq[:, :3]
            offsets = candidates[:, :, step].reshape(n * k, hum.NU)
            step_cost = (cfg.pose_weight * pose_error(qpos, rq) + cfg.offset_weight * np.sum(offsets**2, axis=-1)
                         + cfg.end_effector_weight * np.sum(end**2, axis=(-1, -2))
                         + cfg.root_position_weight * np.sum(d_root[:, :2] ** 2, axis=-1)
                         + cfg.root_height_weight * d_root[:, 2] ** 2)
            contacts, dropped = fallen(planner.sensordata[:, self._fall_ids], qpos[:, 2], rq[:, 2],
                                       self.env_config.max_root_drop_m)  # the env's own test
            falls = contacts.any(axis=1) | dropped | ~np.isfinite(qpos).all(axis=1)
            new = falls & ~down
            cost += np.where(down, 0.0, np.nan_to_num(step_cost, nan=0.0))
            cost += new * cfg.fall_penalty * (1.0 + (h - step) / h)
            down |= falls
        return cost.reshape(n, k)

    def _batch(self, nsim: int) -> Batch:
        if self._planner is None or self._planner.nsim != nsim:
            self._planner = Batch(self.model, nsim, self.config.nthread)
            for name in ("xpos", "sensordata"):
                self._planner.bind(name)
        return self._planner


def knot_weights(horizon: int, knots: int) -> np.ndarray:
    """(horizon, knots) weights of linear interpolation between knots at steps evenly spread
    from the first step to the last (one knot: a constant)."""
    if knots == 1:
        return np.ones((horizon, 1))
    at = np.linspace(0.0, horizon - 1, knots)
    eye = np.eye(knots)
    return np.stack([np.interp(np.arange(horizon), at, eye[j]) for j in range(knots)], axis=1)


def guided_expert(clip: MotionClip, env_config: EnvConfig, search: SearchConfig, tracking, make=SearchExpert):
    """The guided expert: ``make(clip, env_config, search, nominal_targets=...)`` around a
    prepared tracking expert's trajectory (``guided_targets``, however far the reconstruction got:
    for a looping clip over the horizon it was prepared for, a cycle more, since an episode with a
    random start begins anywhere in the first, and a search horizon more); make: SearchExpert, or
    any callable of that signature (``distributed.RayExpert`` with its workers bound).  The
    expert's ``reconstructed_s``: how far the trajectory performs the clip [s] (where it gave up, if
    it did)."""
    steps = int(tracking.info["horizon_steps"]) + math.ceil(clip.duration_s * env_config.control_hz) + search.horizon
    expert = make(clip, env_config, search, nominal_targets=guided_targets(clip, env_config, tracking.ctrl, steps))
    expert.reconstructed_s = tracking.reached_s
    return expert
