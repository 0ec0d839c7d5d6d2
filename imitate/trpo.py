"""TRPO fine-tuning on the env's imitation reward, from a DAgger/SFT checkpoint or from scratch.

Each iteration: roll the stochastic policy out in the batched env (random clip starts), estimate
advantages with GAE (bootstrapping from the critic where an episode was cut by the time limit or
the iteration's end, not where it fell), take the natural-gradient step that maximises the
surrogate within a KL trust region (conjugate gradient on Fisher-vector products, backtracking
line search that accepts a step only if the KL bound holds and the surrogate improves), then fit
the critic.  The Fisher-vector products run on every ``fvp_stride``-th sample, in closed form
for the Gaussian MLP policy (``gaussian_fisher_product``: one linearised forward and one backward
pass through cached activations, about half the double backward's cost).  The small pure
functions (conjugate_gradient, fisher_vector_product, gaussian_fisher_product, line_search, gae)
are tested alone.

From a checkpoint: the observation normaliser is carried over and stays frozen (the policy's
inputs mean what they meant in SFT/DAgger); the log-std is raised to ``init_log_std`` where BC
shrank it, or set to ``set_log_std`` (exploration is set deliberately); the critic is warmed
up on ``critic_warmup_iters`` iterations of rollouts of the initial policy before the first
policy step.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import replaced_on_success, write_text
from .config import EnvConfig
from .errors import CheckpointError
from .observation import OBS_DIM
from .policy import GaussianPolicy, PolicyConfig, load_checkpoint, save_checkpoint
from .settings import TRPOConfig
from .simulation import Simulation


# ----- the pure pieces ---------------------------------------------------------------------
def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 15,
                       residual_tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given as x -> A x."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = matvec(p)
        alpha = float(rr / (p @ ap))
        x.add_(p, alpha=alpha)  # in place: the vectors are as long as the policy's parameters
        r.add_(ap, alpha=-alpha)
        rr_new = r @ r
        p.mul_(rr_new / rr).add_(r)
        rr = rr_new
    return x


def flat_params(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.data.reshape(-1) for p in module.parameters()])


def set_flat_params(module: nn.Module, flat: torch.Tensor) -> None:
    i = 0
    for p in module.parameters():
        n = p.numel()
        p.data.copy_(flat[i:i + n].view_as(p))
        i += n


def fisher_vector_product(kl: Callable[[], torch.Tensor], params: list[torch.Tensor],
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H + damping I) v, H the Hessian of kl() (the mean KL from the old policy, zero at
    the current parameters) with respect to params: the Fisher information times v."""
    grads = torch.autograd.grad(kl(), params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])

    def product(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat_grad @ v, params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]) + damping * v

    return product


def _plain_mlp(policy: GaussianPolicy) -> list[tuple[nn.Linear, str]] | None:
    """The policy's mean as (Linear, activation) layers, the head's activation "", if its mean
    is one MLP of the normalised observation (plus, if residual, a term free of parameters) and
    every parameter is trained; else None."""
    params = list(policy.parameters())
    if policy.more_members or policy.skip is not None or not all(p.requires_grad for p in params):
        return None
    layers, modules = [], list(policy.body)
    for i, module in enumerate(modules):
        if isinstance(module, nn.Linear):
            after = modules[i + 1] if i + 1 < len(modules) else None
            kind = {nn.ReLU: "relu", nn.Tanh: "tanh"}.get(type(after))
            if kind is None:
                return None
            layers.append((module, kind))
        elif not isinstance(module, (nn.ReLU, nn.Tanh)):
            return None
    layers.append((policy.mean_head, ""))
    expected = [policy.log_std] + [p for layer, _ in layers for p in (layer.weight, layer.bias)]
    if len(expected) != len(params) or any(a is not b for a, b in zip(expected, params, strict=True)):
        return None
    return layers


def gaussian_fisher_product(policy: GaussianPolicy, obs: torch.Tensor, damping: float,
                            params: list[torch.Tensor] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v at the current parameters, F the Hessian of the mean KL from the
    current policy on obs (B, obs_dim), v a flat vector over params (default: every parameter of
    the policy; the trained ones, in ``policy.parameters()`` order, where some are frozen).

    For a Gaussian with state-independent std that Hessian is F = mean_b J_b^T diag(1/sigma^2)
    J_b on the mean's parameters (J_b the mean's Jacobian at sample b) plus 2 I on the log-std,
    no cross terms.  Where the mean is one plain MLP (``_plain_mlp``) the product is computed
    in that closed form, from activations cached once: J v by one linearised forward pass, then
    J^T diag(1/sigma^2) J v by one backward pass (about 4 forward passes of work, against the
    double backward of ``fisher_vector_product``, which it equals up to rounding).  Any other
    policy gets ``fisher_vector_product`` of the KL."""
    layers = _plain_mlp(policy)  # None where some parameter is frozen: then params are the trained ones
    params = list(policy.parameters()) if params is None else params
    if layers is None:
        with torch.no_grad():
            old = policy.distribution(obs)
            old = torch.distributions.Normal(old.loc.clone(), old.scale.clone())
        return fisher_vector_product(
            lambda: torch.distributions.kl_divergence(old, policy.distribution(obs)).sum(-1).mean(), params, damping)
    with torch.no_grad():
        inputs, slopes = [policy.normalise(obs)], []  # each layer's input (B, in); d activation / d pre-activation
        for layer, kind in layers[:-1]:
            out = torch.nn.functional.linear(inputs[-1], layer.weight, layer.bias)
            if kind == "relu":
                slopes.append((out > 0).to(out.dtype))
                out = out * slopes[-1]
            else:
                out = torch.tanh(out)
                slopes.append(1.0 - out * out)
            inputs.append(out)
        inv_var = torch.exp(-2.0 * policy.log_std.detach()) / len(obs)  # the mean over samples folded in
        sizes = [p.numel() for p in params]

    @torch.no_grad()
    def product(v: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(v, sizes)
        result = torch.empty_like(v)
        parts = torch.split(result, sizes)  # views: each layer's gradient is written in place
        tangent = None  # J v up to the current layer (B, width)
        for k, (layer, _) in enumerate(layers):
            dw, db = pieces[1 + 2 * k].view_as(layer.weight), pieces[2 + 2 * k]
            tangent_in, tangent = tangent, torch.addmm(db, inputs[k], dw.T)
            if tangent_in is not None:
                tangent.addmm_(tangent_in, layer.weight.T)
            if k < len(slopes):
                tangent.mul_(slopes[k])
        grad = tangent.mul_(inv_var)  # diag(1/sigma^2) J v / B  (B, act_dim)
        for k in range(len(layers) - 1, -1, -1):
            layer = layers[k][0]
            torch.mm(grad.T, inputs[k], out=parts[1 + 2 * k].view_as(layer.weight))
            torch.sum(grad, 0, out=parts[2 + 2 * k])
            if k > 0:
                grad = torch.mm(grad, layer.weight).mul_(slopes[k - 1])
        torch.mul(pieces[0], 2.0, out=parts[0])
        return result.add_(v, alpha=damping)

    return product


def line_search(trial: Callable[[float], tuple[float, float]], max_kl: float, shrink: float = 0.8,
                max_backtracks: int = 10) -> float:
    """Backtrack from the full step: trial(fraction) -> (surrogate improvement, kl) of taking
    fraction of the step.  Returns the first fraction with kl <= max_kl and improvement > 0,
    or 0.0 (no step) if none of 1, shrink, shrink^2, ... qualifies."""
    fraction = 1.0
    for _ in range(max_backtracks):
        improvement, kl = trial(fraction)
        if kl <= max_kl and improvement > 0 and math.isfinite(improvement):
            return fraction
        fraction *= shrink
    return 0.0


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
        ended: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns, arrays (T, N) over time and envs.

    values[t]: V(s_t); next_values[t]: V(s_{t+1}) of the same episode (the final observation
    where the episode ended); terminated[t]: s_{t+1} is terminal (a fall: no bootstrap);
    ended[t]: the episode ended at t for any reason (terminal, time limit, end of the batch),
    so the recursion does not cross into the next episode."""
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1])
    for t in range(len(rewards) - 1, -1, -1):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        last = delta + gamma * lam * (1.0 - ended[t]) * last
        adv[t] = last
    return adv, adv + values


# ----- the trainer -------------------------------------------------------------------------
FVP_MIN_SAMPLES = 256  # a Fisher-vector product subsample is never smaller than this (or the batch)


def fvp_stride(batch: int, subsample: int) -> int:
    """The Fisher-vector products use every stride-th of `batch` samples: every `subsample`-th
    (TRPOConfig.fvp_subsample), but keeping at least FVP_MIN_SAMPLES (or all of a smaller batch)."""
    return max(1, min(subsample, batch // FVP_MIN_SAMPLES))
STATE_FILE = "trpo_state.pt"  # in the run folder: everything needed to resume


@dataclass(frozen=True)
class IterationLog:
    iteration: int
    samples: int
    mean_step_reward: float  # per-step reward of the rollouts (the normalised return of a full-length episode)
    mean_episode_return: float  # over episodes that ended in this iteration (nan if none)
    mean_episode_length_s: float  # survival proxy: mean length of the episodes that ended [s]
    fall_rate: float  # falls per episode ended
    kl: float
    step_fraction: float  # the line search's accepted fraction (0: rejected, or critic warm-up)
    warmup: bool  # only the critic was fitted (the first critic_warmup_iters iterations)
    surrogate_gain: float
    value_loss: float
    log_std: float
    seconds: float


def logged_iterations(run_dir: str | os.PathLike) -> list[IterationLog]:
    """The iterations a TRPO run folder has logged (its log.csv), first to last; [] if none."""
    path = Path(run_dir) / "log.csv"
    if not path.exists():
        return []
    # field types are strings here (from __future__ import annotations)
    parse = {"bool": lambda text: text == "True", "int": int, "float": float}
    kinds = {f.name: parse[str(f.type)] for f in fields(IterationLog)}
    return [IterationLog(**{name: kinds[name](text) for name, text in row.items()})
            for row in csv.DictReader(path.open())]


class Critic(nn.Module):
    """V(obs) through the policy's frozen normaliser."""

    def __init__(self, policy: GaussianPolicy, hidden: tuple[int, ...]):
        super().__init__()
        self.policy = [policy]  # a list, so its parameters are not the critic's
        layers, width = [], policy.obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.from_normalised(self.policy[0].normalise(obs))

    def from_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """V of observations already normalised, (B, obs_dim) -> (B,)."""
        return self.net(x).squeeze(-1)


def _rollout(sim: Simulation, policy: GaussianPolicy, critic: Critic, steps: int, rng: np.random.Generator,
             generator: torch.Generator) -> dict:
    """steps x num_envs transitions of the stochastic policy, episodes reset at random times
    (a Simulation resets them inside its step: the same states and draws from rng, for less)."""
    autoreset = isinstance(sim, Simulation)
    n = sim.num_envs
    obs_dim = policy.obs_dim
    obs_buf = np.zeros((steps, n, obs_dim), np.float32)
    act_buf = np.zeros((steps, n, policy.act_dim), np.float32)
    rew = np.zeros((steps, n))
    term = np.zeros((steps, n))
    ended = np.zeros((steps, n))
    final_obs = np.zeros((steps, n, obs_dim), np.float32)
    ep_returns, ep_lengths, falls = [], [], 0
    running = getattr(sim, "_trpo_running", np.zeros(n))
    running_len = getattr(sim, "_trpo_len", np.zeros(n, int))
    with torch.no_grad():
        for t in range(steps):
            obs = torch.from_numpy(sim.obs.copy())
            mean = policy(obs)
            action = mean + policy.log_std.exp() * torch.randn(mean.shape, generator=generator)
            obs_buf[t], act_buf[t] = obs.numpy(), action.numpy()
            if autoreset:
                r, te, tr, info = sim.step(np.clip(action.numpy(), -1.0, 1.0), autoreset=rng)
                final_obs[t] = info.get("final_obs", sim.obs)
            else:
                r, te, tr, _ = sim.step(np.clip(action.numpy(), -1.0, 1.0))
                final_obs[t] = sim.obs
            rew[t], term[t] = r, te
            done = te | tr | (t == steps - 1)
            ended[t] = done
            running += r
            running_len += 1
            for i in np.flatnonzero(te | tr):
                ep_returns.append(running[i])
                ep_lengths.append(running_len[i])
                falls += bool(te[i])
            finished = np.flatnonzero(te | tr)
            running[finished], running_len[finished] = 0.0, 0
            if len(finished) and not autoreset:
                sim.reset(finished, sim.start_times(rng, len(finished)))
        values = critic(torch.from_numpy(obs_buf.reshape(-1, obs_dim))).numpy().reshape(steps, n)
        next_values = critic(torch.from_numpy(final_obs.reshape(-1, obs_dim))).numpy().reshape(steps, n)
    sim._trpo_running, sim._trpo_len = running, running_len  # episodes go on in the next iteration
    return {"obs": obs_buf, "actions": act_buf, "rewards": rew, "terminated": term, "ended": ended,
            "values": values, "next_values": next_values, "episode_returns": ep_returns,
            "episode_lengths": ep_lengths, "falls": falls}


def training_env(env_config: EnvConfig, config: TRPOConfig) -> EnvConfig:
    """The env TRPO trains in: env_config with random starts, and config's share of them at time
    0 where config sets one."""
    env = replace(env_config, random_start=True)
    return env if config.zero_start_share is None else replace(env, zero_start_share=config.zero_start_share)


class TRPO:
    """The trainer; ``run()`` trains until config.samples, checkpointing into run_dir."""

    def __init__(self, env_config: EnvConfig, config: TRPOConfig, run_dir: str | os.PathLike,
                 policy: GaussianPolicy | None = None, sim=None):
        """sim: the batched env to train in (default: a Simulation of env_config with
        config.num_envs humanoids); anything with num_envs, obs, reset, start_times, step."""
        self.env_config = training_env(env_config, config)
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        self.policy = policy or GaussianPolicy(OBS_DIM, 28, PolicyConfig())
        with torch.no_grad():  # deliberate exploration: BC may have shrunk the log-std to nothing
            if config.set_log_std is not None:
                self.policy.log_std.fill_(config.set_log_std)
            else:
                self.policy.log_std.clamp_(min=config.init_log_std)
        self.critic = Critic(self.policy, config.critic_hidden)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.iteration = 0
        self.samples = 0
        self.normaliser_from_rollouts = policy is None
        self.sim = sim if sim is not None else Simulation(self.env_config, config.num_envs, config.sim_threads)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        n = self.sim.num_envs
        self.sim.reset(np.arange(n), self.sim.start_times(self.rng, n))

    # ----- persistence --------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    def save(self) -> None:
        """trpo_state.pt (everything needed to resume, the policy included) first, then policy.pt
        (the same policy as a checkpoint for `imitate evaluate`); each written atomically."""
        with replaced_on_success(self.state_path) as tmp:
            torch.save({"iteration": self.iteration, "samples": self.samples, "critic": self.critic.state_dict(),
                        "critic_opt": self.critic_opt.state_dict(), "config": asdict(self.config),
                        "policy": self.policy.state_dict(), "policy_config": asdict(self.policy.config),
                        "policy_dims": (self.policy.obs_dim, self.policy.act_dim),
                        "rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}, tmp)
        save_checkpoint(self.run_dir / "policy.pt", self.policy, self.env_config, iteration=self.iteration,
                        samples=self.samples, trpo=asdict(self.config))

    def resume(self) -> bool:
        """Continue from the run folder's last checkpoint, if any (the run folder alone suffices)."""
        if not self.state_path.exists():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=False)
        policy = GaussianPolicy(*state["policy_dims"], PolicyConfig(**state["policy_config"]))
        policy.load_state_dict(state["policy"])
        self.policy = policy
        self.critic.policy[0] = policy  # the critic reads observations through the policy's normaliser
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.iteration, self.samples = state["iteration"], state["samples"]
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self.normaliser_from_rollouts = False
        log_path = self.run_dir / "log.csv"
        if log_path.exists():  # drop iterations logged after the checkpoint: they run again
            rows = list(csv.DictReader(log_path.open()))
            kept = [r for r in rows if int(r["iteration"]) <= self.iteration]
            if len(kept) != len(rows):
                buffer = io.StringIO()
                writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\r\n")
                writer.writeheader()
                writer.writerows(kept)
                write_text(log_path, buffer.getvalue())
        return True

    # ----- one iteration ------------------------------------------------------------------
    def _fit_critic(self, obs: torch.Tensor, returns: torch.Tensor) -> float:
        cfg = self.config
        n = len(obs)
        losses = []
        with torch.no_grad():  # once, not per minibatch: the normaliser is frozen
            x = self.policy.normalise(obs)
        for _ in range(cfg.critic_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, cfg.critic_batch):
                idx = order[start:start + cfg.critic_batch]
                loss = ((self.critic.from_normalised(x[idx]) - returns[idx]) ** 2).mean()
                self.critic_opt.zero_grad()
                loss.backward()
                self.critic_opt.step()
                losses.append(float(loss.detach()))
        return float(np.mean(losses[-max(1, n // cfg.critic_batch):]))

    def _policy_step(self, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor) -> tuple[float, float, float]:
        cfg, policy = self.config, self.policy
        params = [p for p in policy.parameters() if p.requires_grad]
        dist = policy.distribution(obs)
        old_mean, old_std = dist.loc.detach().clone(), dist.scale.detach().clone()
        old_logp = dist.log_prob(actions).sum(-1).detach()

        def surrogate(new: torch.distributions.Normal) -> torch.Tensor:
            return (torch.exp(new.log_prob(actions).sum(-1) - old_logp) * adv).mean()

        loss = surrogate(dist)  # the ratio is 1 here, but its gradient is the policy gradient
        grads = torch.autograd.grad(loss, params)
        g = torch.cat([x.reshape(-1) for x in grads]).detach()
        if not torch.isfinite(g).all():
            raise FloatingPointError("non-finite policy gradient")
        fvp = gaussian_fisher_product(policy, obs[::fvp_stride(len(obs), cfg.fvp_subsample)], cfg.damping, params)
        direction = conjugate_gradient(fvp, g, cfg.cg_iters)
        shs = float(direction @ fvp(direction))
        full_step = direction * math.sqrt(2 * cfg.max_kl / max(shs, 1e-12))
        start = flat_params(policy)
        base = float(loss.detach())
        old = torch.distributions.Normal(old_mean, old_std)

        tried = {}

        def trial(fraction: float) -> tuple[float, float]:
            set_flat_params(policy, start + fraction * full_step)
            with torch.no_grad():
                new = policy.distribution(obs)  # one forward pass for both the surrogate and the KL
                kl = torch.distributions.kl_divergence(old, new).sum(-1).mean()
                tried[fraction] = float(surrogate(new)) - base, float(kl)
            return tried[fraction]

        fraction = line_search(trial, cfg.max_kl, cfg.shrink, cfg.max_backtracks)
        gain, divergence = tried[fraction] if fraction > 0 else (0.0, 0.0)
        set_flat_params(policy, start + fraction * full_step)
        return fraction, gain, divergence

    def iterate(self) -> IterationLog:
        cfg = self.config
        t0 = time.perf_counter()
        torch.set_num_threads(cfg.torch_threads)
        if self.normaliser_from_rollouts:  # from scratch: the first states fix the normaliser
            obs = self.sim.obs
            self.policy.set_normaliser(obs.mean(0), obs.std(0) + 1.0)
            self.normaliser_from_rollouts = False
        batch = _rollout(self.sim, self.policy, self.critic, cfg.steps_per_env, self.rng, self.generator)
        adv, returns = gae(batch["rewards"], batch["values"], batch["next_values"], batch["terminated"],
                           batch["ended"], cfg.gamma, cfg.lam)
        obs = torch.from_numpy(batch["obs"].reshape(-1, self.policy.obs_dim))
        actions = torch.from_numpy(batch["actions"].reshape(-1, batch["actions"].shape[-1]))
        adv_t = torch.as_tensor(adv.reshape(-1), dtype=torch.float32)
        adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)
        fraction = gain = divergence = 0.0
        if self.iteration >= cfg.critic_warmup_iters:
            fraction, gain, divergence = self._policy_step(obs, actions, adv_t)
        value_loss = self._fit_critic(obs, torch.as_tensor(returns.reshape(-1), dtype=torch.float32))
        if not all(torch.isfinite(p).all() for p in self.policy.parameters()) or not math.isfinite(value_loss):
            raise FloatingPointError("non-finite parameters or value loss")
        self.iteration += 1
        self.samples += self.sim.num_envs * cfg.steps_per_env
        ends = len(batch["episode_returns"])
        return IterationLog(
            iteration=self.iteration, samples=self.samples, mean_step_reward=float(batch["rewards"].mean()),
            mean_episode_return=float(np.mean(batch["episode_returns"])) if ends else float("nan"),
            mean_episode_length_s=float(np.mean(batch["episode_lengths"])) / self.env_config.control_hz
            if ends else float("nan"),
            fall_rate=batch["falls"] / ends if ends else float("nan"), kl=divergence, step_fraction=fraction,
            warmup=self.iteration <= cfg.critic_warmup_iters,
            surrogate_gain=gain, value_loss=value_loss, log_std=float(self.policy.log_std.detach().mean()),
            seconds=time.perf_counter() - t0)

    def run(self, on_iteration: Callable[[IterationLog], None] | None = None) -> list[IterationLog]:
        """Train until config.samples env steps, logging to run_dir/log.csv and checkpointing;
        a non-finite loss or parameters stops with the last good checkpoint kept."""
        logs = []
        log_path = self.run_dir / "log.csv"
        while self.samples < self.config.samples:
            try:
                entry = self.iterate()
            except FloatingPointError as exc:
                raise CheckpointError(f"TRPO stopped at iteration {self.iteration + 1}: {exc}; the last good "
                                      f"checkpoint is {self.run_dir / 'policy.pt'}") from None
            logs.append(entry)
            new = not log_path.exists()
            with log_path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(asdict(entry)))
                if new:
                    writer.writeheader()
                writer.writerow(asdict(entry))
            if self.iteration % self.config.checkpoint_every == 0 or self.samples >= self.config.samples:
                self.save()
            if on_iteration:
                on_iteration(entry)
        return logs


def start(run_dir, env_config: EnvConfig, config: TRPOConfig, init_checkpoint=None, *,
          on_progress: Callable[[str], None] | None = None) -> TRPO:
    """A trainer in run_dir: resumed if it holds a checkpoint (said through on_progress), else
    from init_checkpoint (its env configuration must match) or from scratch."""
    policy = None
    if init_checkpoint is not None:
        policy, _, _ = load_checkpoint(init_checkpoint, env_config)
    saved = Path(run_dir) / "config.json"
    if saved.exists() and (Path(run_dir) / STATE_FILE).exists():
        # a resumed run keeps the episode settings (fall rule, limits, zero starts) it started with
        started_in = replace(EnvConfig(**json.loads(saved.read_text())["env"]), random_start=True)
        if started_in.policy_key() == env_config.policy_key():
            if started_in != training_env(env_config, config) and on_progress:
                on_progress(f"resuming with the run's own env settings (config.json): {started_in.to_json()}")
            env_config, config = started_in, replace(config, zero_start_share=started_in.zero_start_share)
    trainer = TRPO(env_config, config, run_dir, policy)
    if trainer.resume():
        if on_progress:
            on_progress(f"resuming TRPO at iteration {trainer.iteration} ({trainer.samples} samples)")
    else:
        write_text(Path(run_dir) / "config.json", json.dumps(
            {"env": json.loads(trainer.env_config.to_json()), "trpo": asdict(config), "init": str(init_checkpoint)},
            indent=2))
    return trainer
