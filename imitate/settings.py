"""The settings of the training stages: the policy, SFT, DAgger (and its beta schedules), TRPO.

Plain frozen dataclasses, free of torch and MuJoCo, so that the command line builds its options
from them (``imitate.options``) without loading either; each stage's module uses its own
(``imitate.sft.SFTConfig`` is this module's ``SFTConfig``).  A field's default and help are
written once, here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ConfigError
from .options import setting


@dataclass(frozen=True)
class PolicyConfig:
    hidden: tuple[int, ...] = setting((1024, 512), "hidden layer sizes (DeepMimic's)")
    activation: str = "relu"  # relu or tanh
    init_log_std: float = -1.0  # initial log-std of the action noise (std 0.37 of the [-1, 1] range)
    obs_clip: float = 10.0  # normalised observations are clipped to +-obs_clip
    # add a linear map of the normalised observation to the mean (zero at first): expert laws
    # that are near-linear in the state (PD servo targets around the observed reference) are
    # then fitted from few samples, and the MLP learns only what is not linear
    linear_skip: bool = setting(False, "add a learned linear map of the observation to the MLP's output (fits "
                                       "PD-like labels from few samples)")
    members: int = setting(1, "M MLPs from different initial weights, each fitted to the labels, their means "
                              "averaged (1: one MLP)")
    # pd_target only: the mean is the action that aims the servos at the observed reference ahead
    # (a fixed map of the raw observation's ref_q columns) plus the networks' output, so they learn
    # only the expert's correction to the reference, not the whole gait's swing of the targets
    residual: bool = setting(False, "the servo targets of the observed reference plus the networks' output, so "
                                    "they learn only the expert's correction (pd_target only)")

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden sizes must be >= 1; found {self.hidden}")
        if not (isinstance(self.members, int) and not isinstance(self.members, bool) and self.members >= 1):
            raise ConfigError(f"PolicyConfig.members must be an int >= 1; found {self.members!r}")
        if self.activation not in ("relu", "tanh"):
            raise ConfigError(f"activation must be relu or tanh; found {self.activation!r}")


@dataclass(frozen=True)
class SFTConfig:
    loss: str = setting("mse", "mse: squared error of the mean action; nll: Gaussian negative log-likelihood "
                               "(log-std learned)", choices=("mse", "nll"))
    epochs: int = setting(100, "training epochs (at most; early stopping ends sooner)")
    batch_size: int = setting(256, "minibatch size")
    lr: float = setting(1e-3, "Adam learning rate")
    weight_decay: float = 0.0
    patience: int = setting(15, "early stopping: stop after this many epochs without a better validation loss")
    seed: int = 0
    # torch threads (0: all cores).  1 by default: on a shared 2-core machine, 2 threads made 5
    # epochs of the 1024-512 MLP take 8.8 s against 0.5 s on one (threads spin waiting for a core)
    threads: int = 1
    last_rounds: int | None = None  # train on the mocap round plus only the last M rounds
    # samples drawn (without replacement) from the train split per epoch; None: all of it.  A fixed
    # figure keeps the cost of a DAgger retrain constant while the store grows round by round.
    epoch_samples: int | None = setting(None, "samples drawn per epoch (default: all the train split); a fixed "
                                              "figure, e.g. a round's size, keeps each DAgger retrain's cost "
                                              "constant as the store grows")
    # leave out the states of an episode that ended in a fall within this many seconds of the fall
    # (train and validation alike): from the last ~0.7 s before a learner's fall not even the search
    # expert recovers (experiments/expert_recovery.py).  Measured on walk, dropping them cost a third of
    # the survival (their labels still delay the fall): off by default
    drop_before_fall_s: float = setting(0.0, "train without the states of an episode that fell within S seconds "
                                             "before its fall (labels no expert can act on; 0: keep all)")

    def __post_init__(self):
        if self.loss not in ("mse", "nll"):
            raise ConfigError(f"SFTConfig.loss must be mse or nll; found {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.patience < 1:
            raise ConfigError(f"SFTConfig: epochs, batch_size, patience must be >= 1 and lr > 0; found {self}")
        if self.epoch_samples is not None and self.epoch_samples < 1:
            raise ConfigError(f"SFTConfig.epoch_samples must be >= 1 or None; found {self.epoch_samples}")
        if not self.drop_before_fall_s >= 0:
            raise ConfigError(f"SFTConfig.drop_before_fall_s must be >= 0; found {self.drop_before_fall_s}")


@dataclass(frozen=True)
class TRPOConfig:
    samples: int = setting(200_000, "env samples in all")
    num_envs: int = setting(16, "humanoids simulated in parallel")
    steps_per_env: int = setting(128, "steps per env per iteration (samples per iteration: num_envs x this)")
    gamma: float = 0.95  # DeepMimic's
    lam: float = 0.95
    max_kl: float = setting(0.01, "trust region: the largest mean KL divergence of an update")
    cg_iters: int = 15
    damping: float = 0.1
    # Fisher-vector products on every k-th sample (OpenAI baselines' TRPO uses 5), keeping at least
    # FVP_MIN_SAMPLES: the products are most of an update's cost, and a few hundred samples
    # estimate the curvature well enough
    fvp_subsample: int = 5
    shrink: float = 0.8
    max_backtracks: int = 10
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_lr: float = 1e-3
    critic_epochs: int = 10
    critic_batch: int = 256
    critic_warmup_iters: int = setting(2, "iterations fitting only the critic first")
    init_log_std: float = setting(-1.0, "raise the policy's log-std to at least this at the start")
    # or set to exactly this at the start (also lowered): a policy that balances falls under
    # BC's default std of e^-1 = 0.37 action units (about 0.5 rad per joint)
    set_log_std: float | None = setting(None, "set the policy's log-std to this at the start, lowering it too (a "
                                              "balancing policy needs small noise: e.g. -2.5, std 0.08 action units)")
    # a policy trained only from random clip times may not balance from the standing start that
    # the evaluation's episodes begin with (docs/trpo.md: one walk run fell at 3 s from phase 0
    # until a quarter of TRPO's episodes started there)
    zero_start_share: float | None = setting(None, "start this share of episodes at clip time 0, as the evaluation's "
                                                   "do, instead of a random time (EnvConfig.zero_start_share; "
                                                   "default: the env's: the --init checkpoint's, or 0; a resumed run "
                                                   "keeps its own)")
    checkpoint_every: int = setting(5, "write the checkpoint every N iterations")
    seed: int = 0
    torch_threads: int = 1  # small batches: one thread leaves the other core to the physics
    sim_threads: int = setting(0, "threads stepping the humanoids (0: all cores; several runs side by side: 1 each)")

    def __post_init__(self):
        object.__setattr__(self, "critic_hidden", tuple(self.critic_hidden))
        if min(self.samples, self.num_envs, self.steps_per_env, self.cg_iters, self.critic_epochs,
               self.fvp_subsample, self.torch_threads) < 1 or self.sim_threads < 0:
            raise ConfigError(f"TRPOConfig: samples, num_envs, steps_per_env, cg_iters, critic_epochs, fvp_subsample, "
                              f"torch_threads >= 1 and sim_threads >= 0; {self}")
        if self.zero_start_share is not None and not 0.0 <= self.zero_start_share <= 1.0:
            raise ConfigError(f"TRPOConfig.zero_start_share must be in [0, 1] or None; found {self.zero_start_share}")
        if self.set_log_std is not None and not math.isfinite(self.set_log_std):
            raise ConfigError(f"TRPOConfig.set_log_std must be finite or None; found {self.set_log_std}")
        if not (0 < self.gamma <= 1 and 0 <= self.lam <= 1 and self.max_kl > 0 and 0 < self.shrink < 1):
            raise ConfigError(f"TRPOConfig: need 0 < gamma <= 1, 0 <= lam <= 1, max_kl > 0, 0 < shrink < 1; {self}")


BetaSchedule = Callable[[int], float]


def constant(beta: float) -> BetaSchedule:
    return lambda k: beta


def linear(start: float = 1.0, end: float = 0.0, rounds: int = 10) -> BetaSchedule:
    """start at round 1, falling linearly to end at round `rounds`, then end."""
    return lambda k: end if rounds <= 1 else start + (end - start) * min(max(k - 1, 0), rounds - 1) / (rounds - 1)


def exponential(p: float = 0.5) -> BetaSchedule:
    """p ** (k - 1): 1 at round 1, then multiplied by p each round (Ross et al.'s choice)."""
    return lambda k: p ** max(k - 1, 0)


def schedule(spec: str) -> BetaSchedule:
    """Parse "constant:B", "linear:START,END,ROUNDS" or "exponential:P"."""
    name, _, args = spec.partition(":")
    try:
        values = [float(v) for v in args.split(",")] if args else []
        in_unit = all(0.0 <= v <= 1.0 for v in values[:2])  # betas and P are probabilities
        if name == "constant" and len(values) == 1 and in_unit:
            return constant(values[0])
        if name == "linear" and len(values) == 3 and in_unit and values[2] >= 1:
            return linear(values[0], values[1], int(values[2]))
        if name == "exponential" and len(values) == 1 and in_unit:
            return exponential(values[0])
    except (ValueError, OverflowError):
        pass
    raise ConfigError(f"beta schedule: expected constant:B, linear:START,END,ROUNDS or exponential:P with B, START, "
                      f"END, P in [0, 1] and ROUNDS >= 1; found {spec!r}")


@dataclass(frozen=True)
class DAggerConfig:
    rounds: int = setting(3, "DAgger rounds after round 0 (the SFT on the mocap rounds)")
    num_envs: int = setting(8, "humanoids collecting in parallel each round")
    steps_per_env: int = setting(150, "control steps per env per round (150: 5 s at 30 Hz)")
    beta: str = setting("exponential:0.5", "the expert's share of the driving in round k: constant:B, "
                                           "linear:START,END,ROUNDS, exponential:P (P^(k-1))")
    mixing: str = setting("step", "step: expert or learner chosen each step with probability beta; segment: for "
                                  "whole segments", choices=("step", "segment"))
    segment_steps: int = setting(15, "control steps per segment with mixing segment")
    keep_rounds: int | None = setting(None, "train on the mocap rounds and the last M rounds only (default: all)")
    # True: each round fits a new policy (same architecture, round 0's SFT settings, the store's
    # current statistics) on the kept data, as in Ross et al.; False: warm-start from round k-1
    retrain_from_scratch: bool = setting(False, "each round fits a new policy on the kept data (round 0's SFT "
                                                "settings, the retrains' data settings) instead of warm-starting "
                                                "the last round's")
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=100, patience=15))
    retrain: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=30, patience=8))
    policy: PolicyConfig = field(default_factory=PolicyConfig)  # round 0's new policy (no --init)
    eval_episodes: int = setting(1, "evaluation episodes of each round's policy, from phase 0")
    eval_horizon_s: float = setting(10.0, "evaluation horizon of each round [s] (at most the clip's length where it "
                                          "does not loop)")
    # noise on the starting hinge angles of each evaluation episode [rad], as `imitate evaluate`
    # (without it the episodes of a deterministic policy are all the same one)
    eval_init_noise_rad: float = 0.01
    # std of Gaussian noise on every executed action while collecting (action units, clipped to
    # [-1, 1]; DART, Laskey et al. 2017): the rollouts drift as a slightly worse policy's would, so
    # the expert labels the states the next learner drifts into before it gets there
    collect_noise: float = setting(0.0, "std of Gaussian noise on every executed action while collecting (action "
                                        "units; DART): the expert also labels the states a perturbed learner drifts "
                                        "into")
    # a search expert's label is the first step of a plan over its whole horizon: the states that
    # plan reaches next (followed open loop in the env's physics) come labelled with its actions
    # there, N more labels per search for N control steps of simulation (dagger.PlanFollower)
    plan_labels: int = setting(0, "with a search or guided expert: also label the states each label's plan reaches "
                                  "over this many control steps after it, with the plan's own actions (source "
                                  "plan; 0: off)")
    # the fit's luck: on the same labels the training seed alone moves a policy's survival by 2x
    # (docs/search_expert.md); a fit costs seconds where a round's labels cost minutes, so fit
    # several and keep the one that the round's own evaluation scores best
    fits: int = setting(1, "policies fitted each DAgger round (round 0's SFT: one) from other training seeds; the "
                           "one whose evaluation (eval_episodes from phase 0) has the best return is the round's "
                           "policy and drives the next round (that evaluation is then the best of N: a confirmation "
                           "from other starts is the unbiased figure)")
    seed: int = 0

    def __post_init__(self):
        for name, kind in (("sft", SFTConfig), ("retrain", SFTConfig), ("policy", PolicyConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, kind(**value))
        schedule(self.beta)
        if self.mixing not in ("step", "segment"):
            raise ConfigError(f"mixing must be step or segment; found {self.mixing!r}")
        if min(self.rounds, self.num_envs, self.steps_per_env, self.segment_steps, self.eval_episodes) < 1:
            raise ConfigError("rounds, num_envs, steps_per_env, segment_steps and eval_episodes must be >= 1")
        if not 0.0 <= self.collect_noise < float("inf"):
            raise ConfigError(f"collect_noise must be a finite std >= 0; found {self.collect_noise}")
        if not (isinstance(self.plan_labels, int) and not isinstance(self.plan_labels, bool) and self.plan_labels >= 0):
            raise ConfigError(f"plan_labels must be an integer >= 0; found {self.plan_labels!r}")
        if not (isinstance(self.fits, int) and not isinstance(self.fits, bool) and self.fits >= 1):
            raise ConfigError(f"fits must be an integer >= 1; found {self.fits!r}")
