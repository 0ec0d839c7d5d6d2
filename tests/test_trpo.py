"""TRPO: conjugate gradient against numpy's solver, Fisher-vector products against the explicit
Hessian of the KL (and the Gaussian's closed-form Fisher; the closed-form product and its
fallback for ensembles and linear skips), the KL-bounded line search on trial
functions with known KL and improvement, GAE against an explicit per-episode sum, episode
bookkeeping across iterations, learning a tiny point-mass task, one seed giving one run, a
Simulation's in-step resets giving the batch that step-then-reset gives, starting from a
checkpoint (frozen normaliser, raised log-std, refusals) and resuming a run folder."""

import csv
import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from conftest import synthetic_frames, write_clip

import imitate.trpo as trpo_module
from imitate.config import EnvConfig
from imitate.errors import CheckpointError, ConfigError
from imitate.observation import OBS_DIM
from imitate.policy import GaussianPolicy, PolicyConfig, load_checkpoint, save_checkpoint
from imitate.trpo import (
    TRPO,
    TRPOConfig,
    conjugate_gradient,
    fisher_vector_product,
    flat_params,
    gae,
    gaussian_fisher_product,
    line_search,
    set_flat_params,
    start,
)

# ----- conjugate_gradient ------------------------------------------------------------------


def random_spd(n: int, seed: int, eigenvalues: np.ndarray | None = None) -> np.ndarray:
    """Q diag(eigenvalues) Q^T with a random orthogonal Q (eigenvalues in [1, 10] by default)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eig = rng.uniform(1.0, 10.0, n) if eigenvalues is None else eigenvalues
    return (q * eig) @ q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_solves_an_spd_system_like_numpy(seed):
    a = random_spd(20, seed)
    b = np.random.default_rng(100 + seed).normal(size=20)
    a_t = torch.from_numpy(a)
    calls = []

    def matvec(v):
        calls.append(1)
        return a_t @ v

    x = conjugate_gradient(matvec, torch.from_numpy(b), iters=60, residual_tol=1e-24)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-9, atol=1e-10)
    assert 0 < len(calls) <= 60
    # b itself is untouched (the solver works on copies)
    np.testing.assert_array_equal(b, np.random.default_rng(100 + seed).normal(size=20))


def test_conjugate_gradient_default_iterations_on_a_well_conditioned_float32_system():
    a = random_spd(20, 7, eigenvalues=np.linspace(1.0, 2.0, 20))  # condition number 2: fast convergence
    b = np.random.default_rng(8).normal(size=20)
    x = conjugate_gradient(lambda v: torch.from_numpy(a.astype(np.float32)) @ v, torch.from_numpy(b.astype(np.float32)))
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-4, atol=1e-4)


def test_conjugate_gradient_stops_at_an_exact_solution():
    calls = []

    def matvec(v):
        calls.append(1)
        return 3.0 * v

    x = conjugate_gradient(matvec, torch.zeros(20, dtype=torch.float64), iters=15)
    assert len(calls) == 0  # b = 0: x = 0 is exact, no product is needed
    assert torch.equal(x, torch.zeros(20, dtype=torch.float64))

    # Two distinct eigenvalues: CG is exact after two steps and must stop there.
    eig = np.r_[np.full(10, 2.0), np.full(10, 5.0)]
    a = random_spd(20, 3, eigenvalues=eig)
    b = np.random.default_rng(4).normal(size=20)
    calls.clear()
    x = conjugate_gradient(lambda v: (calls.append(1), torch.from_numpy(a) @ v)[1], torch.from_numpy(b), iters=15)
    assert len(calls) == 2
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-9, atol=1e-10)


# ----- fisher_vector_product ---------------------------------------------------------------


def tiny_policy_float64(seed: int) -> GaussianPolicy:
    """GaussianPolicy(3, 2, hidden=(4,)) in float64 with all weights random (not the near-zero
    initial head), a non-trivial normaliser and a log-std that differs per dimension."""
    torch.manual_seed(seed)
    policy = GaussianPolicy(3, 2, PolicyConfig(hidden=(4,), activation="tanh")).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, 0.7)
        policy.log_std.copy_(torch.tensor([-0.7, 0.3], dtype=torch.float64))
        policy.obs_mean.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
        policy.obs_std.copy_(torch.tensor([1.5, 0.5, 2.0], dtype=torch.float64))
    return policy


def unflatten(policy: GaussianPolicy, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named parameters from a flat vector, in the module's parameter order."""
    out, i = {}, 0
    for name, p in policy.named_parameters():
        out[name] = flat[i:i + p.numel()].view_as(p)
        i += p.numel()
    assert i == len(flat)
    return out


def kl_hessian(policy: GaussianPolicy, obs: torch.Tensor) -> tuple[torch.Tensor, torch.distributions.Normal]:
    """autograd's Hessian (P, P) of the mean KL from the current policy's distribution on obs
    over the flat parameters, at the current parameters; and that frozen distribution."""
    with torch.no_grad():
        old = policy.distribution(obs)
        fixed_old = torch.distributions.Normal(old.loc.clone(), old.scale.clone())

    def kl_of(flat):
        params = unflatten(policy, flat)
        mean = torch.func.functional_call(policy, params, (obs,))
        std = params["log_std"].exp().expand(len(obs), -1)
        return torch.distributions.kl_divergence(fixed_old, torch.distributions.Normal(mean, std)).sum(-1).mean()

    return torch.autograd.functional.hessian(kl_of, flat_params(policy).clone()), fixed_old


@pytest.mark.parametrize("seed", [0, 1])
def test_fisher_vector_product_matches_the_explicit_hessian_of_the_kl(seed):
    policy = tiny_policy_float64(seed)
    obs = torch.from_numpy(np.random.default_rng(seed).normal(0.0, 1.5, (7, 3)))
    theta0 = flat_params(policy).clone()
    n_params = len(theta0)
    assert n_params == 3 * 4 + 4 + 4 * 2 + 2 + 2
    hessian, fixed_old = kl_hessian(policy, obs)  # fixed_old: the frozen copy of the current distribution
    assert hessian.shape == (n_params, n_params)

    # The closed form at the current parameters: the Fisher of a Gaussian with mean mu(theta)
    # and log-std s is  mean_b J_b^T diag(1/sigma^2) J_b  on the mean's parameters plus 2 I on s.
    jac = torch.autograd.functional.jacobian(
        lambda flat: torch.func.functional_call(policy, unflatten(policy, flat), (obs,)), theta0)  # (B, A, P)
    inv_var = torch.exp(-2.0 * policy.log_std.detach())
    fisher = torch.einsum("bap,a,baq->pq", jac, inv_var, jac) / len(obs)
    names = [name for name, p in policy.named_parameters() for _ in range(p.numel())]
    log_std_index = [i for i, name in enumerate(names) if name == "log_std"]
    assert len(log_std_index) == 2
    fisher[log_std_index, log_std_index] += 2.0
    np.testing.assert_allclose(hessian.numpy(), fisher.numpy(), atol=1e-10)  # the reference is consistent

    def kl():
        return torch.distributions.kl_divergence(fixed_old, policy.distribution(obs)).sum(-1).mean()

    damping = 0.1
    product = fisher_vector_product(kl, list(policy.parameters()), damping)
    rng = np.random.default_rng(10 + seed)
    for _ in range(4):  # several products from one graph
        v = torch.from_numpy(rng.normal(size=n_params))
        expected = (hessian + damping * torch.eye(n_params, dtype=torch.float64)) @ v
        np.testing.assert_allclose(product(v).numpy(), expected.numpy(), rtol=1e-9, atol=1e-11)
    e0 = torch.zeros(n_params, dtype=torch.float64)
    e0[0] = 1.0  # one column of the damped Hessian
    np.testing.assert_allclose(product(e0).numpy(), (hessian[:, 0] + damping * e0).numpy(), atol=1e-11)
    assert torch.equal(flat_params(policy), theta0)  # the products leave the parameters alone


@pytest.mark.parametrize("activation, members, linear_skip", [("tanh", 1, False), ("relu", 1, False),
                                                             ("relu", 2, False), ("tanh", 1, True)])
def test_gaussian_fisher_product_matches_the_explicit_hessian_of_the_kl(activation, members, linear_skip):
    """The closed-form product (one MLP) and its fallback (an ensemble, a linear skip) against
    autograd's Hessian of the mean KL from the current policy, damped."""
    torch.manual_seed(3)
    config = PolicyConfig(hidden=(5, 4), activation=activation, members=members, linear_skip=linear_skip)
    policy = GaussianPolicy(3, 2, config).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, 0.7)
        policy.log_std.copy_(torch.tensor([-0.7, 0.3], dtype=torch.float64))
        policy.obs_mean.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    obs = torch.from_numpy(np.random.default_rng(4).normal(0.0, 1.5, (9, 3)))
    theta0 = flat_params(policy).clone()
    hessian, _ = kl_hessian(policy, obs)
    damping = 0.1
    product = gaussian_fisher_product(policy, obs, damping)
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = torch.from_numpy(rng.normal(size=len(theta0)))
        expected = (hessian + damping * torch.eye(len(theta0), dtype=torch.float64)) @ v
        np.testing.assert_allclose(product(v).numpy(), expected.numpy(), rtol=1e-9, atol=1e-11)
    assert torch.equal(flat_params(policy), theta0)


def test_flat_params_round_trip_in_parameter_order():
    policy = tiny_policy_float64(3)
    flat = flat_params(policy)
    assert torch.equal(flat, torch.cat([p.detach().reshape(-1) for p in policy.parameters()]))
    new = torch.arange(len(flat), dtype=torch.float64)
    set_flat_params(policy, new)
    assert torch.equal(policy.log_std.detach(), new[:2])  # a module's own parameters come first
    assert torch.equal(policy.body[0].weight.detach().reshape(-1), new[2:14])
    assert torch.equal(policy.mean_head.bias.detach(), new[-2:])
    assert torch.equal(flat_params(policy), new)


# ----- line_search -------------------------------------------------------------------------


def test_line_search_returns_the_largest_admissible_backtrack():
    """kl(f) = c f^2, improvement(f) = f (a - f): admissible iff c f^2 <= max_kl and f < a."""
    rng = np.random.default_rng(0)
    outcomes = {"full": 0, "backtracked": 0, "none": 0}
    for _ in range(500):
        c = 10 ** rng.uniform(-3, 1)
        a = rng.uniform(-0.1, 1.5)
        max_kl = 10 ** rng.uniform(-3, -1)
        shrink = rng.uniform(0.3, 0.95)
        max_backtracks = int(rng.integers(1, 15))
        tried = []

        def trial(f, c=c, a=a, tried=tried):
            tried.append(f)
            return f * (a - f), c * f * f

        f = line_search(trial, max_kl, shrink, max_backtracks)
        # the fractions tried: 1, shrink, shrink^2, ... (at most max_backtracks of them), in order
        assert 1 <= len(tried) <= max_backtracks
        np.testing.assert_allclose(tried, shrink ** np.arange(len(tried)), rtol=1e-12)
        candidates = shrink ** np.arange(max_backtracks)
        ok = (c * candidates ** 2 <= max_kl) & (candidates * (a - candidates) > 0)
        # boundary cases within rounding would make the reference ambiguous: skip them
        if np.any(np.isclose(c * candidates ** 2, max_kl, rtol=1e-9)) or np.any(np.isclose(candidates, a)):
            continue
        if ok.any():
            k = int(np.argmax(ok))  # the first admissible one is the largest
            assert f == pytest.approx(shrink ** k, rel=1e-12)
            assert c * f * f <= max_kl and f * (a - f) > 0
            assert len(tried) == k + 1  # it stops at the first admissible fraction
            outcomes["full" if k == 0 else "backtracked"] += 1
        else:
            assert f == 0.0
            assert len(tried) == max_backtracks
            outcomes["none"] += 1
    assert min(outcomes.values()) >= 20, outcomes  # every branch was exercised


def test_line_search_rejects_non_finite_trials():
    # nan/inf improvement or nan KL at the full step: backtrack to the first finite, admissible one
    for bad in [(math.nan, 0.0), (math.inf, 0.0), (1.0, math.nan), (1.0, math.inf)]:
        f = line_search(lambda f, bad=bad: bad if f == 1.0 else (f, 0.0), max_kl=0.01, shrink=0.5)
        assert f == 0.5
    assert line_search(lambda f: (math.nan, math.nan), max_kl=0.01) == 0.0
    assert line_search(lambda f: (0.0, 0.0), max_kl=0.01) == 0.0  # no improvement is no step
    assert line_search(lambda f: (1.0, 0.01), max_kl=0.01) == 1.0  # the bound itself is allowed


# ----- gae ---------------------------------------------------------------------------------


def reference_gae(rewards, values, next_values, terminated, ended, gamma, lam):
    """Per env, per episode (split after each ended step): delta_t = r_t + gamma V(s_{t+1}) -
    V(s_t) with V(s_{t+1}) = values[t+1] inside the episode, at its last step next_values[t]
    (0 if terminated); A_t = sum_l (gamma lam)^l delta_{t+l} over the rest of the episode."""
    steps, n = rewards.shape
    adv = np.full((steps, n), np.nan)
    for env in range(n):
        start = 0
        while start < steps:
            end = start
            while end < steps - 1 and not ended[end, env]:
                end += 1
            deltas = []
            for t in range(start, end + 1):
                if t < end:
                    v_next = values[t + 1, env]
                else:
                    v_next = 0.0 if terminated[t, env] else next_values[t, env]
                deltas.append(rewards[t, env] + gamma * v_next - values[t, env])
            for t in range(start, end + 1):
                adv[t, env] = sum((gamma * lam) ** (u - t) * deltas[u - start] for u in range(t, end + 1))
            start = end + 1
    return adv, adv + values


def random_rollout(seed: int, steps: int = 12, n: int = 3, last_ended: bool = True):
    """Random arrays as a rollout gives them: next_values[t] = values[t+1] inside an episode,
    the final state's value where it ended; terminations only where episodes end."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(steps, n))
    values = rng.normal(size=(steps, n))
    ended = (rng.uniform(size=(steps, n)) < 0.25).astype(float)
    ended[-1] = 1.0 if last_ended else ended[-1]
    terminated = ended * (rng.uniform(size=(steps, n)) < 0.5)
    next_values = np.where(ended > 0, rng.normal(size=(steps, n)), np.roll(values, -1, axis=0))
    return rewards, values, next_values, terminated, ended


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.95, 0.5)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gae_matches_an_explicit_per_episode_sum(gamma, lam, seed):
    arrays = random_rollout(seed, last_ended=seed != 3)
    rewards, values, next_values, terminated, ended = arrays
    assert ended[:-1].any() and terminated.any() and (ended > terminated).any()  # all the cases occur
    adv, returns = gae(*arrays, gamma, lam)
    ref_adv, ref_returns = reference_gae(*arrays, gamma, lam)
    assert adv.shape == returns.shape == (12, 3)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(returns, ref_returns, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(returns, adv + values, rtol=0, atol=1e-15)


def test_gae_closed_forms():
    # one env, one episode of 4 steps, constant reward 1, zero values: lam = 1 gives the
    # discounted return-to-go; a termination drops the bootstrap, a cut keeps it
    rewards = np.ones((4, 1))
    zeros = np.zeros((4, 1))
    ended = np.array([[0.0], [0.0], [0.0], [1.0]])
    final = np.array([[0.0], [0.0], [0.0], [10.0]])  # V(s_{t+1}): 0 inside, 10 for the final state
    adv, ret = gae(rewards, zeros, final, ended, ended, 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1 + 0.5 + 0.25 + 0.125, 1 + 0.5 + 0.25, 1 + 0.5, 1.0])
    adv, ret = gae(rewards, zeros, final, zeros, ended, 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1.875 + 0.0625 * 10, 1.75 + 0.125 * 10, 1.5 + 0.25 * 10, 1.0 + 0.5 * 10])
    # lam = 0: the one-step TD error
    values = np.arange(4.0)[:, None]
    next_values = values + 1.0
    adv, ret = gae(rewards, values, next_values, zeros, zeros, 0.9, 0.0)
    np.testing.assert_allclose(adv[:, 0], 1.0 + 0.9 * (values[:, 0] + 1.0) - values[:, 0])
    np.testing.assert_allclose(ret, adv + values)


# ----- the trainer on a tiny task ----------------------------------------------------------


class PointMass:
    """N 1-D point masses with first-order velocity lag that must reach and stay at x = 0.5:
    obs = [x, v], action = the commanded velocity in [-1, 1], reward exp(-4 (x - 0.5)^2) per
    step, cut after LIMIT steps; episodes start at rest at x = start_times(...) in [-1, 0]."""

    TARGET, DT, LAG, LIMIT = 0.5, 0.1, 0.5, 32

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.x = np.zeros(num_envs)
        self.v = np.zeros(num_envs)
        self.t = np.zeros(num_envs, int)
        self.obs = np.zeros((num_envs, 2), np.float32)

    def start_times(self, rng, n):
        return rng.uniform(-1.0, 0.0, n)

    def reset(self, ids, start_times):
        ids = np.asarray(ids)
        self.x[ids], self.v[ids], self.t[ids] = start_times, 0.0, 0
        self.obs[:] = np.stack([self.x, self.v], 1)

    def step(self, actions):
        a = np.asarray(actions, float)
        assert a.shape == (self.num_envs, 1) and np.all(np.abs(a) <= 1.0)  # TRPO clips its actions
        self.v = self.LAG * self.v + (1 - self.LAG) * a[:, 0]
        self.x = self.x + self.DT * self.v
        self.t += 1
        self.obs[:] = np.stack([self.x, self.v], 1)
        reward = np.exp(-4.0 * (self.x - self.TARGET) ** 2)
        return reward, np.zeros(self.num_envs, bool), self.t >= self.LIMIT, {}


@pytest.fixture
def clip_config(synthetic_clip_path):
    return EnvConfig(clip=str(synthetic_clip_path))


def test_trpo_improves_the_return_of_a_point_mass(clip_config, tmp_path):
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 1, PolicyConfig(hidden=(16,)))
    iterations, per_iteration = 12, 8 * 64
    config = TRPOConfig(samples=iterations * per_iteration, num_envs=8, steps_per_env=64, critic_warmup_iters=1,
                        critic_hidden=(16,), max_kl=0.05, seed=0, checkpoint_every=1000)
    trainer = TRPO(clip_config, config, tmp_path / "run", policy=policy, sim=PointMass(8))
    logs = trainer.run()
    assert [log.iteration for log in logs] == list(range(1, iterations + 1))
    assert [log.samples for log in logs] == [per_iteration * k for k in range(1, iterations + 1)]
    rewards = [log.mean_step_reward for log in logs]
    first, last = np.mean(rewards[:2]), np.mean(rewards[-3:])
    assert last > first + 0.15, rewards
    assert logs[0].step_fraction == 0.0 and logs[0].kl == 0.0  # the critic's warm-up: no policy step
    assert sum(log.step_fraction > 0 for log in logs[1:]) >= iterations // 2
    assert all(0.0 <= log.kl <= config.max_kl for log in logs)  # the trust region holds
    # 64 steps per env and 32-step episodes: two whole episodes per env per iteration, each
    # with the return of its 32 rewards
    assert all(np.isfinite(log.mean_episode_return) and log.fall_rate == 0.0 for log in logs)
    np.testing.assert_allclose([log.mean_episode_return for log in logs], np.array(rewards) * PointMass.LIMIT,
                               rtol=1e-9)
    # the final checkpoint (samples reached) holds the trained policy
    saved, _, meta = load_checkpoint(tmp_path / "run" / "policy.pt")
    assert meta["iteration"] == iterations
    for name, value in trainer.policy.state_dict().items():
        assert torch.equal(saved.state_dict()[name], value), name


@pytest.mark.parametrize("subsample, rows, stride", [(1, 64, 1), (4, 64, 1), (4, 1024, 4), (8, 1024, 4)])
def test_policy_step_is_the_scaled_natural_gradient_step(clip_config, tmp_path, subsample, rows, stride):
    """One policy step against numpy: g and F of a Gaussian in closed form (F from the mean's
    Jacobian on every stride-th sample: every subsample-th, keeping at least 256 samples),
    x = (F + damping I)^-1 g, full step x sqrt(2 max_kl / x^T (F + damping I) x), then
    the first of 1, shrink, shrink^2, ... whose closed-form KL is within max_kl and whose
    surrogate improves."""
    torch.manual_seed(5)
    policy = GaussianPolicy(2, 1, PolicyConfig(hidden=(4,), activation="tanh")).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, 0.8)
        policy.log_std.fill_(-0.3)
    config = TRPOConfig(num_envs=2, steps_per_env=4, critic_hidden=(4,), cg_iters=60, max_kl=0.02, damping=0.1,
                        shrink=0.7, checkpoint_every=1000, fvp_subsample=subsample)
    trainer = TRPO(clip_config, config, tmp_path / "run", policy=policy, sim=PointMass(2))
    rng = np.random.default_rng(5)
    obs = torch.from_numpy(rng.normal(0.0, 1.0, (rows, 2)))
    with torch.no_grad():
        mu0 = policy(obs).numpy()[:, 0]
    sigma0 = math.exp(-0.3)
    actions_np = mu0 + sigma0 * rng.normal(size=rows)
    adv_np = rng.normal(size=rows)
    adv_np = (adv_np - adv_np.mean()) / adv_np.std()
    theta0 = flat_params(policy).clone()
    names = [name for name, p in policy.named_parameters() for _ in range(p.numel())]
    s_index = names.index("log_std")
    jac = torch.autograd.functional.jacobian(
        lambda flat: torch.func.functional_call(policy, unflatten(policy, flat), (obs,)), theta0).numpy()[:, 0, :]

    z = (actions_np - mu0) / sigma0
    g = (adv_np[:, None] * jac * (z / sigma0)[:, None]).mean(0)
    g[s_index] += (adv_np * (z ** 2 - 1.0)).mean()
    fisher_rows = jac[::stride]
    fisher = fisher_rows.T @ fisher_rows / sigma0 ** 2 / len(fisher_rows)
    fisher[s_index, s_index] += 2.0
    damped = fisher + config.damping * np.eye(len(g))
    x = np.linalg.solve(damped, g)
    full_step = x * np.sqrt(2 * config.max_kl / (x @ damped @ x))

    def evaluate(theta):
        """Closed-form KL from the old Gaussian and the surrogate at parameters theta."""
        with torch.no_grad():
            mu = torch.func.functional_call(policy, unflatten(policy, torch.from_numpy(theta)), (obs,)).numpy()[:, 0]
        sigma = math.exp(theta[s_index])
        kl = np.mean(np.log(sigma / sigma0) + (sigma0 ** 2 + (mu0 - mu) ** 2) / (2 * sigma ** 2) - 0.5)
        logp_ratio = (-0.5 * ((actions_np - mu) / sigma) ** 2 - math.log(sigma)) - (-0.5 * z ** 2 - math.log(sigma0))
        return np.mean(np.exp(logp_ratio) * adv_np), kl

    base, _ = evaluate(theta0.numpy())
    expected_fraction = 0.0
    for k in range(config.max_backtracks):
        surrogate, kl = evaluate(theta0.numpy() + config.shrink ** k * full_step)
        if kl <= config.max_kl and surrogate > base:
            expected_fraction = config.shrink ** k
            break
    assert expected_fraction > 0  # the test exercises a real step

    fraction, gain, divergence = trainer._policy_step(obs, torch.from_numpy(actions_np[:, None]),
                                                      torch.from_numpy(adv_np))
    assert fraction == pytest.approx(expected_fraction, rel=1e-12)
    step = flat_params(policy).numpy() - theta0.numpy()
    # CG stops at a residual of 1e-5 (squared norm 1e-10): equal up to that
    assert np.linalg.norm(step - fraction * full_step) <= 1e-3 * np.linalg.norm(fraction * full_step)
    surrogate, kl = evaluate(flat_params(policy).numpy())
    assert divergence == pytest.approx(kl, rel=1e-9) and 0 < divergence <= config.max_kl
    assert gain == pytest.approx(surrogate - base, rel=1e-9) and gain > 0


class Counter:
    """Reward 1 per step; env i is cut after LENGTHS[i] steps, env 0's episodes instead fall
    (terminate) at their 3rd step.  Observations are the step counts, so a policy sees them."""

    LENGTHS = np.array([3, 5, 7])

    def __init__(self):
        self.num_envs = 3
        self.t = np.zeros(3, int)
        self.obs = np.zeros((3, 2), np.float32)
        self.resets = 0

    def start_times(self, rng, n):
        return np.zeros(n)

    def reset(self, ids, start_times):
        self.t[np.asarray(ids)] = 0
        self.resets += len(ids)
        self.obs[:, 0] = self.t

    def step(self, actions):
        self.t += 1
        self.obs[:, 0] = self.t
        done = self.t >= self.LENGTHS
        terminated = done & (np.arange(3) == 0)
        return np.ones(3), terminated, done & ~terminated, {}


def test_episode_statistics_carry_across_iterations(clip_config, tmp_path):
    config = TRPOConfig(samples=4 * 3 * 4, num_envs=3, steps_per_env=4, critic_hidden=(4,), critic_warmup_iters=10,
                        seed=0, checkpoint_every=1000)
    sim = Counter()
    trainer = TRPO(clip_config, config, tmp_path / "run", policy=GaussianPolicy(2, 1, PolicyConfig(hidden=(4,))),
                   sim=sim)
    logs = trainer.run()
    assert len(logs) == 4
    # 16 steps per env: episodes end at steps 3, 6, 9, 12, 15 (env 0, falls), 5, 10, 15 (env 1),
    # 7, 14 (env 2); episodes spanning two iterations are counted whole in the later one
    ends = {0: [3, 6, 9, 12, 15], 1: [5, 10, 15], 2: [7, 14]}
    for k, log in enumerate(logs):
        window = range(4 * k + 1, 4 * k + 5)
        lengths = [int(Counter.LENGTHS[env]) for env, steps in ends.items() for s in steps if s in window]
        falls = sum(s in window for s in ends[0])
        assert log.mean_step_reward == 1.0
        assert log.mean_episode_return == pytest.approx(np.mean(lengths))
        assert log.mean_episode_length_s == pytest.approx(np.mean(lengths) / clip_config.control_hz)
        assert log.fall_rate == pytest.approx(falls / len(lengths))
    assert sim.resets == 3 + 10  # the initial reset of every env, then one per episode ended


# ----- from a checkpoint, and resuming -----------------------------------------------------


def tiny_checkpoint(path, env_config: EnvConfig, seed: int = 0) -> GaussianPolicy:
    """A tiny humanoid policy with a non-trivial normaliser and a log-std below and above -1."""
    torch.manual_seed(seed)
    policy = GaussianPolicy(OBS_DIM, 28, PolicyConfig(hidden=(16,)))
    rng = np.random.default_rng(seed)
    policy.set_normaliser(rng.normal(0.0, 0.5, OBS_DIM), rng.uniform(0.5, 3.0, OBS_DIM))
    with torch.no_grad():
        policy.log_std.copy_(torch.linspace(-3.0, 0.0, 28))
        policy.mean_head.weight.normal_(0.0, 0.1)
    save_checkpoint(path, policy, env_config, source="test")
    return policy


def small_config(**changes) -> TRPOConfig:
    base = dict(samples=16, num_envs=2, steps_per_env=8, critic_hidden=(16,), critic_warmup_iters=1,
                init_log_std=-1.5, checkpoint_every=1, seed=3)
    return TRPOConfig(**{**base, **changes})


def test_a_seed_gives_the_same_run(clip_config, tmp_path):
    """From scratch in a Simulation, twice with one seed: the same logs and weights bit for bit
    (another seed: another run)."""
    config = small_config(samples=48, init_log_std=-0.5)
    runs = [start(tmp_path / name, clip_config, replace(config, seed=seed)) for name, seed in
            (("a", 3), ("b", 3), ("c", 4))]
    logs = [[asdict(replace(log, seconds=0.0)) for log in trainer.run()] for trainer in runs]
    assert len(logs[0]) == 3
    np.testing.assert_equal(logs[0], logs[1])  # (nan where no episode ended: equal to nan here)
    assert not torch.equal(flat_params(runs[0].policy), flat_params(runs[2].policy))
    for part in ("policy", "critic"):
        first, second = (getattr(trainer, part).state_dict() for trainer in runs[:2])
        for name, value in first.items():
            assert torch.equal(second[name], value), (part, name)


class PlainSim:
    """A Simulation behind the bare interface (num_envs, obs, reset, start_times, step): TRPO
    steps it, then resets the ended episodes itself."""

    def __init__(self, sim):
        self.sim = sim

    num_envs = property(lambda self: self.sim.num_envs)
    obs = property(lambda self: self.sim.obs)

    def reset(self, ids, start_times):
        self.sim.reset(ids, start_times)

    def start_times(self, rng, n):
        return self.sim.start_times(rng, n)

    def step(self, action):
        return self.sim.step(action)


def test_the_rollout_resets_inside_the_step_as_after_it(clip_config, tmp_path):
    """A Simulation's rollout (its step resets the ended episodes) gives the batch that step,
    then reset, gives: two trainers of one seed, one of them seeing its Simulation bare."""
    config = small_config(num_envs=3, init_log_std=0.5)  # wild actions: humanoids fall
    trainers = [TRPO(clip_config, config, tmp_path / name) for name in ("inside", "after")]
    for trainer in trainers:
        trainer.policy.set_normaliser(trainer.sim.obs.mean(0), trainer.sim.obs.std(0) + 1.0)
    trainers[1].policy.load_state_dict(trainers[0].policy.state_dict())
    trainers[1].critic.load_state_dict(trainers[0].critic.state_dict())
    sims = [trainers[0].sim, PlainSim(trainers[1].sim)]
    for _ in range(2):  # the second rollout goes on with the first one's episodes
        inside, after = (trpo_module._rollout(sim, t.policy, t.critic, 40, t.rng, t.generator)
                         for t, sim in zip(trainers, sims, strict=True))
        assert len(inside["episode_returns"]) > 0  # episodes ended and restarted
        for key in ("obs", "actions", "rewards", "terminated", "ended", "values", "next_values"):
            assert np.array_equal(inside[key], after[key]), key
        assert (inside["episode_returns"], inside["episode_lengths"], inside["falls"]) == \
            (after["episode_returns"], after["episode_lengths"], after["falls"])


def test_start_from_a_checkpoint_freezes_the_normaliser_and_raises_the_log_std(clip_config, tmp_path):
    original = tiny_checkpoint(tmp_path / "sft.pt", clip_config)
    config = small_config(samples=32)
    trainer = start(tmp_path / "run", clip_config, config, init_checkpoint=tmp_path / "sft.pt")
    assert trainer.iteration == 0 and trainer.samples == 0
    expected_log_std = np.maximum(np.linspace(-3.0, 0.0, 28, dtype=np.float32), -1.5)
    assert (expected_log_std > np.linspace(-3.0, 0.0, 28, dtype=np.float32)).any()  # some are raised
    np.testing.assert_array_equal(trainer.policy.log_std.detach().numpy(), expected_log_std)
    for name, value in original.state_dict().items():  # everything else is the checkpoint's
        if name != "log_std":
            assert torch.equal(trainer.policy.state_dict()[name], value), name
    assert json.loads((tmp_path / "run" / "config.json").read_text())["init"] == str(tmp_path / "sft.pt")

    before = flat_params(trainer.policy).clone()
    logs = [trainer.iterate(), trainer.iterate()]  # the critic's warm-up, then a policy step
    assert logs[0].step_fraction == 0.0
    assert torch.equal(trainer.policy.obs_mean, original.obs_mean)
    assert torch.equal(trainer.policy.obs_std, original.obs_std)
    assert trainer.iteration == 2 and trainer.samples == 32
    moved = not torch.equal(flat_params(trainer.policy), before)
    assert moved == (logs[1].step_fraction > 0)


def test_start_refuses_a_checkpoint_for_another_env_configuration(clip_config, tmp_path):
    tiny_checkpoint(tmp_path / "torque.pt", replace(clip_config, action_space="torque"))
    with pytest.raises(CheckpointError, match="another env configuration"):
        start(tmp_path / "run", clip_config, small_config(), init_checkpoint=tmp_path / "torque.pt")
    other_clip = write_clip(tmp_path / "other.txt", synthetic_frames(seed=1))
    tiny_checkpoint(tmp_path / "other_clip.pt", replace(clip_config, clip=str(other_clip)))
    with pytest.raises(CheckpointError):
        start(tmp_path / "run2", clip_config, small_config(), init_checkpoint=tmp_path / "other_clip.pt")


def read_log(run_dir) -> list[dict]:
    with (run_dir / "log.csv").open() as f:
        return list(csv.DictReader(f))


def test_resume_continues_the_run(clip_config, tmp_path):
    tiny_checkpoint(tmp_path / "sft.pt", clip_config)
    run_dir = tmp_path / "run"
    config = small_config(samples=32)
    first = start(run_dir, clip_config, config, init_checkpoint=tmp_path / "sft.pt")
    logs = first.run()
    assert len(logs) == 2 and logs[1].step_fraction > 0  # the policy moved off the checkpoint
    rows = read_log(run_dir)
    assert [int(r["iteration"]) for r in rows] == [1, 2] and [int(r["samples"]) for r in rows] == [16, 32]
    policy_state = {k: v.clone() for k, v in first.policy.state_dict().items()}
    critic_state = {k: v.clone() for k, v in first.critic.state_dict().items()}

    second = start(run_dir, clip_config, replace(config, samples=48), init_checkpoint=tmp_path / "sft.pt")
    assert second.iteration == 2 and second.samples == 32
    for name, value in policy_state.items():  # the run's policy, not the initial checkpoint's
        assert torch.equal(second.policy.state_dict()[name], value), name
    for name, value in critic_state.items():
        assert torch.equal(second.critic.state_dict()[name], value), name
    assert not second.normaliser_from_rollouts
    more = second.run()
    assert [log.iteration for log in more] == [3] and more[0].samples == 48
    rows = read_log(run_dir)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3] and [int(r["samples"]) for r in rows] == [16, 32, 48]


def test_resume_from_the_run_folder_alone(clip_config, tmp_path):
    tiny_checkpoint(tmp_path / "sft.pt", clip_config)
    run_dir = tmp_path / "run"
    first = start(run_dir, clip_config, small_config(), init_checkpoint=tmp_path / "sft.pt")
    first.run()
    second = start(run_dir, clip_config, small_config(samples=32))  # "resumed if it holds a checkpoint"
    assert second.iteration == 1
    assert second.policy.config == first.policy.config
    for name, value in first.policy.state_dict().items():
        assert torch.equal(second.policy.state_dict()[name], value), name


def test_a_resumed_run_keeps_its_env_settings_and_says_so(clip_config, tmp_path):
    """Resumed with other episode settings (a fall rule given anew), the run goes on in the env
    it started in and says so; a fresh run in a folder without a checkpoint takes the new ones."""
    started_in = replace(clip_config, fall_bodies="all", max_root_drop_m=0.3)
    run_dir = tmp_path / "run"
    start(run_dir, started_in, small_config()).run()
    notes = []
    resumed = start(run_dir, clip_config, small_config(samples=32), on_progress=notes.append)
    assert resumed.env_config == started_in
    assert any("own env settings" in n for n in notes)
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    (fresh_dir / "config.json").write_text((run_dir / "config.json").read_text())  # no checkpoint beside it
    assert start(fresh_dir, clip_config, small_config()).env_config == clip_config


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_logs_each_iteration_once(clip_config, tmp_path):
    tiny_checkpoint(tmp_path / "sft.pt", clip_config)
    run_dir = tmp_path / "run"
    config = small_config(samples=64, checkpoint_every=2)

    def interrupt_at_3(entry):
        if entry.iteration == 3:  # after iteration 3 was logged, before its (not due) checkpoint
            raise Interrupted

    first = start(run_dir, clip_config, config, init_checkpoint=tmp_path / "sft.pt")
    with pytest.raises(Interrupted):
        first.run(interrupt_at_3)
    assert [int(r["iteration"]) for r in read_log(run_dir)] == [1, 2, 3]
    second = start(run_dir, clip_config, config, init_checkpoint=tmp_path / "sft.pt")
    assert second.iteration == 2  # the last checkpoint
    second.run()
    assert [int(r["iteration"]) for r in read_log(run_dir)] == [1, 2, 3, 4]


def test_sim_threads_sets_the_simulation_threads(clip_config, tmp_path):
    trainer = start(tmp_path / "run", clip_config, small_config(sim_threads=1))
    assert trainer.sim.batch.nthread == 1 and trainer.sim.ref.nthread == 1
    for bad in ({"sim_threads": -1}, {"torch_threads": 0}):
        with pytest.raises(ConfigError, match="sim_threads"):
            small_config(**bad)


def test_zero_start_share_starts_that_share_of_the_episodes_at_time_zero(clip_config, tmp_path):
    """TRPOConfig.zero_start_share sets the env's share of episodes begun at clip time 0: with 1
    every humanoid starts at 0, with 0 none does (random starts), and None keeps the env's own;
    the run's config.json and checkpoint record the env it trained in."""
    everyone = start(tmp_path / "all", clip_config, small_config(num_envs=8, zero_start_share=1.0))
    np.testing.assert_array_equal(everyone.sim.ref_time_s, np.zeros(8))
    assert json.loads((tmp_path / "all" / "config.json").read_text())["env"]["zero_start_share"] == 1.0
    everyone.run()
    assert load_checkpoint(tmp_path / "all" / "policy.pt")[1].zero_start_share == 1.0
    nobody = start(tmp_path / "none", replace(clip_config, zero_start_share=1.0), small_config(num_envs=8,
                                                                                              zero_start_share=0.0))
    assert (nobody.sim.ref_time_s > 0).all()
    kept = start(tmp_path / "kept", replace(clip_config, zero_start_share=1.0), small_config(num_envs=8))
    np.testing.assert_array_equal(kept.sim.ref_time_s, np.zeros(8))
    with pytest.raises(ConfigError, match="zero_start_share must be in"):
        small_config(zero_start_share=1.5)
    # resumed, a run keeps the share it began with and says so where another is asked for
    notes = []
    resumed = start(tmp_path / "all", clip_config, small_config(num_envs=8, samples=32, zero_start_share=0.5),
                    on_progress=notes.append)
    assert resumed.env_config.zero_start_share == 1.0 and resumed.config.zero_start_share == 1.0
    assert any("own env settings" in n for n in notes)
    notes.clear()
    start(tmp_path / "all", clip_config, small_config(num_envs=8, samples=32, zero_start_share=1.0),
          on_progress=notes.append)
    assert not any("own env settings" in n for n in notes)


def test_set_log_std_sets_it_exactly_even_below_the_checkpoints(clip_config, tmp_path):
    tiny_checkpoint(tmp_path / "sft.pt", clip_config)  # log-std from -3 to 0
    trainer = start(tmp_path / "run", clip_config, small_config(set_log_std=-2.5), init_checkpoint=tmp_path / "sft.pt")
    np.testing.assert_array_equal(trainer.policy.log_std.detach().numpy(), np.full(28, -2.5, np.float32))
    with pytest.raises(ConfigError, match="set_log_std"):
        small_config(set_log_std=float("nan"))


def test_logged_iterations_read_back_the_log(tmp_path):
    """The iterations of log.csv as TRPO wrote them (what a resumed pipeline shows, not an empty table)."""
    import csv
    from dataclasses import asdict

    from imitate.trpo import IterationLog, logged_iterations

    rows = [IterationLog(iteration=i, samples=128 * i, mean_step_reward=0.1 * i,
                         mean_episode_return=float("nan") if i == 1 else 3.5, mean_episode_length_s=1.5,
                         fall_rate=1.0, kl=0.01, step_fraction=0.5, warmup=i == 1,
                         surrogate_gain=0.2, value_loss=0.3, log_std=-1.0, seconds=2.0) for i in (1, 2)]
    with (tmp_path / "log.csv").open("w", newline="") as f:  # the way TRPO.run writes it
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    back = logged_iterations(tmp_path)
    assert [asdict(b) for b in back][1] == asdict(rows[1]) and back[0].warmup and not back[1].warmup
    assert np.isnan(back[0].mean_episode_return) and logged_iterations(tmp_path / "none") == []
