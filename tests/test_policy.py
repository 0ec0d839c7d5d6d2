"""The Gaussian MLP policy: its normaliser and layers against plain torch, the action noise,
the log density in closed form, and checkpoints (round trip, atomic write, refusals)."""

import math
import os

import h5py
import numpy as np
import pytest
import torch
from conftest import synthetic_frames, write_clip

from imitate.config import EnvConfig
from imitate.errors import CheckpointError, ConfigError
from imitate.policy import GaussianPolicy, PolicyConfig, load_checkpoint, save_checkpoint
from imitate.reward import RewardConfig

OBS, ACT = 179, 28


def make_policy(seed: int = 0, activation: str = "relu", obs_clip: float = 10.0) -> GaussianPolicy:
    """A small policy with a non-trivial normaliser (some std below the 1e-3 floor) and a
    mean head with weights large enough that its output is far from zero."""
    torch.manual_seed(seed)
    policy = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32, 16), activation=activation, obs_clip=obs_clip))
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.2, 3.0, OBS)
    std[:5] = [0.0, 1e-5, 5e-4, 1e-3, 2e-3]  # the first three are floored at 1e-3
    policy.set_normaliser(rng.normal(0, 2, OBS), std)
    with torch.no_grad():
        policy.mean_head.weight.normal_(0.0, 0.3)
        policy.mean_head.bias.normal_(0.0, 0.1)
    return policy


def reference_forward(policy: GaussianPolicy, obs: np.ndarray, mean: np.ndarray, std: np.ndarray,
                      obs_clip: float, activation: str) -> torch.Tensor:
    """The mean action written out: normalise with the given (unfloored) std, clip, then each
    Linear of the body by hand, then the head."""
    x = torch.as_tensor(obs, dtype=torch.float64)
    s = torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float64)
    h = ((x - torch.as_tensor(mean, dtype=torch.float64)) / s).clamp(-obs_clip, obs_clip)
    linears = [m for m in policy.body if isinstance(m, torch.nn.Linear)]
    assert len(linears) == len(policy.config.hidden)
    for layer in linears:
        h = h @ layer.weight.detach().double().T + layer.bias.detach().double()
        h = torch.relu(h) if activation == "relu" else torch.tanh(h)
    return h @ policy.mean_head.weight.detach().double().T + policy.mean_head.bias.detach().double()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_equals_explicit_normaliser_and_layers(activation):
    policy = make_policy(1, activation, obs_clip=5.0)
    rng = np.random.default_rng(1)
    mean = policy.obs_mean.double().numpy()
    std = rng.uniform(0.2, 3.0, OBS)
    std[:5] = [0.0, 1e-5, 5e-4, 1e-3, 2e-3]
    policy.set_normaliser(mean, std)
    np.testing.assert_allclose(policy.obs_std.numpy(), np.maximum(std, 1e-3), rtol=1e-6)
    near = mean + std * rng.normal(0, 1, (64, OBS))  # normalised values mostly inside +-5
    far = mean + rng.choice([-1, 1], (64, OBS)) * (np.maximum(std, 1e-3) * rng.uniform(6, 1e3, (64, OBS)))
    for obs in (near, far):
        got = policy(torch.as_tensor(obs, dtype=torch.float32)).double()
        want = reference_forward(policy, obs, mean, std, 5.0, activation)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the clip is active on the far observations: every input sits at +-5 after normalising
    z = policy.normalise(torch.as_tensor(far, dtype=torch.float32))
    np.testing.assert_allclose(z.abs().numpy(), 5.0)
    # and moving a far input further changes nothing
    farther = mean + 10.0 * (far - mean)
    torch.testing.assert_close(policy(torch.as_tensor(farther, dtype=torch.float32)),
                               policy(torch.as_tensor(far, dtype=torch.float32)))


def test_linear_skip_adds_a_linear_map_of_the_normalised_observation(tmp_path, synthetic_clip_path):
    """mean = MLP(z) + W z + b, z the normalised observation; W and b start at zero (the policy
    starts as the plain MLP), and a checkpoint keeps them."""
    torch.manual_seed(3)
    plain = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32, 16)))
    torch.manual_seed(3)
    skip = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32, 16), linear_skip=True))
    rng = np.random.default_rng(3)
    mean, std = rng.normal(0, 2, OBS), rng.uniform(0.2, 3.0, OBS)
    for p in (plain, skip):
        p.set_normaliser(mean, std)
    obs = mean + std * rng.normal(0, 1, (16, OBS))
    x = torch.as_tensor(obs, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(skip(x), plain(x))  # zero at first
        skip.skip.weight.normal_(0.0, 0.1)
        skip.skip.bias.normal_(0.0, 0.1)
    z = (torch.as_tensor(obs) - torch.as_tensor(mean)) / torch.as_tensor(std)
    want = reference_forward(skip, obs, mean, std, 10.0, "relu") + z @ skip.skip.weight.detach().double().T \
        + skip.skip.bias.detach().double()
    torch.testing.assert_close(skip(x).double(), want, rtol=1e-4, atol=1e-4)
    config = EnvConfig(clip=str(synthetic_clip_path))
    save_checkpoint(tmp_path / "skip.pt", skip, config)
    loaded, _, _ = load_checkpoint(tmp_path / "skip.pt", config)
    assert loaded.config.linear_skip
    with torch.no_grad():
        assert torch.equal(loaded(x), skip(x))


def test_act_deterministic_is_the_clamped_mean():
    policy = make_policy(2)
    with torch.no_grad():
        policy.mean_head.bias.copy_(torch.linspace(-3, 3, ACT))  # some means beyond +-1
    obs = np.random.default_rng(2).normal(0, 1, (50, OBS))
    mean = reference_forward(policy, obs, policy.obs_mean.double().numpy(), policy.obs_std.double().numpy(),
                             10.0, "relu").numpy()
    assert (np.abs(mean) > 1).mean() > 0.3  # the clamp matters here
    got = policy.act(obs, deterministic=True)
    assert got.shape == (50, ACT) and got.dtype == np.float64
    np.testing.assert_allclose(got, np.clip(mean, -1, 1), atol=1e-5)


def test_act_stochastic_noise_has_the_policy_std_and_is_seeded():
    torch.manual_seed(3)
    policy = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32,)))  # mean head ~0 at init
    log_std = torch.log(torch.linspace(0.05, 0.25, ACT))
    with torch.no_grad():
        policy.log_std.copy_(log_std)
    obs = np.random.default_rng(3).normal(0, 1, (4000, OBS))
    mean = policy.act(obs, deterministic=True)
    assert np.abs(mean).max() < 0.05
    a = policy.act(obs, deterministic=False, generator=torch.Generator().manual_seed(7))
    noise = a - mean
    # 4000 samples per dimension: the sample std is within ~2.2% (1 sigma) of the truth
    np.testing.assert_allclose(noise.std(axis=0), log_std.exp().numpy(), rtol=0.1)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=0.03)
    # exactly mean + std * N(0, 1) drawn from the generator, in plain torch
    g = torch.Generator().manual_seed(7)
    want = (torch.as_tensor(mean) + log_std.exp().double() * torch.randn((4000, ACT), generator=g).double())
    np.testing.assert_allclose(a, want.clamp(-1, 1).numpy(), atol=1e-5)
    again = policy.act(obs, deterministic=False, generator=torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(a, again)
    other = policy.act(obs, deterministic=False, generator=torch.Generator().manual_seed(8))
    assert np.abs(other - a).mean() > 0.01
    # large noise is clamped into [-1, 1]
    with torch.no_grad():
        policy.log_std.fill_(math.log(3.0))
    wide = policy.act(obs[:200], deterministic=False, generator=torch.Generator().manual_seed(1))
    assert wide.min() == -1.0 and wide.max() == 1.0


def test_log_prob_is_the_gaussian_density():
    policy = make_policy(4)
    with torch.no_grad():
        policy.log_std.copy_(torch.linspace(-2.0, 0.5, ACT))
    rng = np.random.default_rng(4)
    obs = torch.as_tensor(rng.normal(0, 1, (20, OBS)), dtype=torch.float32)
    act = torch.as_tensor(rng.uniform(-1.5, 1.5, (20, ACT)), dtype=torch.float32)
    mu = reference_forward(policy, obs.numpy(), policy.obs_mean.double().numpy(),
                           policy.obs_std.double().numpy(), 10.0, "relu")
    sigma = torch.exp(torch.linspace(-2.0, 0.5, ACT)).double()
    want = -0.5 * ((act.double() - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    dist = policy.distribution(obs)
    torch.testing.assert_close(dist.log_prob(act).double(), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dist.stddev.double(), sigma.expand(20, -1), rtol=1e-6, atol=1e-6)


# ----- checkpoints -------------------------------------------------------------------------

@pytest.fixture
def config(synthetic_clip_path):
    return EnvConfig(clip=str(synthetic_clip_path))


def test_checkpoint_round_trip(tmp_path, config):
    policy = make_policy(5, "tanh", obs_clip=4.0)
    with torch.no_grad():
        policy.log_std.copy_(torch.linspace(-1.5, -0.5, ACT))
    path = tmp_path / "sub" / "policy.pt"
    metadata = {"epochs": 3, "store": tmp_path / "store.h5", "nested": {"a": [1, 2.5, "x"]}}
    save_checkpoint(path, policy, config, **metadata)
    assert sorted(os.listdir(path.parent)) == ["policy.pt"]  # no temporary file left beside it
    loaded, env_config, meta = load_checkpoint(path, config)
    assert env_config == config and env_config.to_json() == config.to_json()
    assert loaded.config == policy.config == PolicyConfig(hidden=(32, 16), activation="tanh", obs_clip=4.0)
    assert meta == {"epochs": 3, "store": str(tmp_path / "store.h5"), "nested": {"a": [1, 2.5, "x"]}}
    assert not loaded.training
    for (k, a), (k2, b) in zip(policy.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    obs = np.random.default_rng(5).normal(0, 3, (30, OBS))
    x = torch.as_tensor(obs, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(policy(x), loaded(x))
        assert torch.equal(policy.distribution(x).log_prob(policy(x)), loaded.distribution(x).log_prob(loaded(x)))
    np.testing.assert_array_equal(policy.act(obs), loaded.act(obs))


def test_checkpoint_write_is_atomic(tmp_path, config, monkeypatch):
    """A save that dies while writing leaves the previous checkpoint whole."""
    path = tmp_path / "policy.pt"
    first = make_policy(6)
    save_checkpoint(path, first, config)
    before = path.read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:  # half of the file written, then the "crash"
            fh.truncate(os.path.getsize(f) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, make_policy(7), config)
    monkeypatch.undo()
    assert path.read_bytes() == before
    loaded, _, _ = load_checkpoint(path, config)
    obs = torch.zeros(2, OBS)
    with torch.no_grad():
        assert torch.equal(loaded(obs), first(obs))


def test_failed_save_leaves_no_temporary_file(tmp_path, config, monkeypatch):
    def failing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt" / "policy.pt", make_policy(10), config)
    assert os.listdir(tmp_path / "ckpt") == []


def test_checkpoint_for_another_env_is_refused(tmp_path, config):
    path = tmp_path / "policy.pt"
    save_checkpoint(path, make_policy(8), config)
    other_clip = write_clip(tmp_path / "other_clip.txt", synthetic_frames(seed=1))
    cases = [
        (EnvConfig(clip=str(other_clip)), str(other_clip)),
        (EnvConfig(clip=config.clip, action_space="torque"), "torque"),
        (EnvConfig(clip=config.clip, control_hz=15.0), "15.0"),
    ]
    for other, words in cases:
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path, other)
        message = str(err.value)
        assert str(path) in message and "another env configuration" in message
        assert words in message  # the differing value is named
    # what the policy does not depend on may differ
    for same in (EnvConfig(clip=config.clip, random_start=False),
                 EnvConfig(clip=config.clip, episode_s=3.0),
                 EnvConfig(clip=config.clip, reward=RewardConfig(pose_weight=0.1, root_weight=0.5))):
        assert same != config and same.policy_key() == config.policy_key()
        _, trained_for, _ = load_checkpoint(path, same)
        assert trained_for == config  # the config it was trained for, not the requested one


def test_foreign_and_missing_files_are_refused(tmp_path, config):
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="found a file of another kind") as err:
        load_checkpoint(text)
    assert str(text) in str(err.value) and "KeyError" not in str(err.value)
    store = tmp_path / "store.h5"  # a demonstration store given where a checkpoint belongs
    h5py.File(store, "w").close()
    with pytest.raises(CheckpointError, match="found an HDF5 file"):
        load_checkpoint(store)
    with pytest.raises(CheckpointError, match="found a directory"):
        load_checkpoint(tmp_path)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, plain)
    with pytest.raises(CheckpointError, match="expected an imitate policy checkpoint") as err:
        load_checkpoint(plain)
    assert str(plain) in str(err.value)
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match="no such checkpoint") as err:
        load_checkpoint(missing, config)
    assert str(missing) in str(err.value)
    # a checkpoint of another format version
    good = tmp_path / "good.pt"
    save_checkpoint(good, make_policy(9), config)
    cut = tmp_path / "cut.pt"  # a checkpoint cut short (a full disk, a copy stopped)
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_checkpoint(cut)
    payload = torch.load(good, weights_only=True)
    payload["version"] = 2
    torch.save(payload, good)
    with pytest.raises(CheckpointError, match="expected checkpoint version 1, found 2"):
        load_checkpoint(good)


# ----- ensembles ---------------------------------------------------------------------------


def _member_forward(body, head, x: torch.Tensor) -> torch.Tensor:
    """One MLP member written out in float64: each Linear by hand, ReLU between."""
    h = x.double()
    for layer in [m for m in body if isinstance(m, torch.nn.Linear)]:
        h = torch.relu(h @ layer.weight.detach().double().T + layer.bias.detach().double())
    return h @ head.weight.detach().double().T + head.bias.detach().double()


def test_ensemble_mean_is_the_average_of_its_members(tmp_path, config):
    """members=3: three MLPs with different weights; the mean action is their plain average,
    each member computed by hand; a checkpoint keeps all three."""
    torch.manual_seed(7)
    policy = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32, 16), members=3))
    with torch.no_grad():
        for head in [policy.mean_head] + [m[1] for m in policy.more_members]:
            head.weight.normal_(0.0, 0.3)
    members = [(policy.body, policy.mean_head)] + [(m[0], m[1]) for m in policy.more_members]
    assert len(members) == 3
    assert not torch.equal(members[0][0][0].weight, members[1][0][0].weight)  # different initial weights
    obs = torch.as_tensor(np.random.default_rng(7).normal(0, 1, (20, OBS)), dtype=torch.float32)
    x = policy.normalise(obs)
    each = [_member_forward(body, head, x) for body, head in members]
    assert min(float((each[0] - e).abs().max()) for e in each[1:]) > 1e-2  # the members disagree
    with torch.no_grad():
        torch.testing.assert_close(policy(obs).double(), sum(each) / 3, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(policy.member_means(obs).double(), torch.stack(each), rtol=1e-5, atol=1e-5)
    save_checkpoint(tmp_path / "ens.pt", policy, config)
    loaded, _, _ = load_checkpoint(tmp_path / "ens.pt", config)
    assert loaded.config.members == 3
    with torch.no_grad():
        assert torch.equal(loaded(obs), policy(obs))


def test_one_member_is_the_plain_mlp():
    """members=1 keeps the single MLP's layout and initial weights (older checkpoints load)."""
    torch.manual_seed(2)
    one = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32, 16)))
    assert len(one.more_members) == 0
    assert sorted(one.state_dict()) == sorted(["obs_mean", "obs_std", "body.0.weight", "body.0.bias",
                                              "body.2.weight", "body.2.bias", "mean_head.weight",
                                              "mean_head.bias", "log_std"])


@pytest.mark.parametrize("members", [0, -1, 1.5, True])
def test_members_must_be_a_positive_int(members):
    with pytest.raises(ConfigError, match="members"):
        PolicyConfig(members=members)


def test_residual_adds_the_servo_targets_of_the_reference_ahead(tmp_path, synthetic_clip_path, config):
    """residual=True: the mean is the same networks' output plus the pd_target action aiming the
    servos at the clip's hinge angles one lookahead ahead, computed here from the clip and the
    humanoid's joint ranges (not from the observation); a checkpoint keeps it."""
    from imitate import humanoid as hum
    from imitate.motion import load_clip
    from imitate.simulation import Simulation

    clip = load_clip(synthetic_clip_path)
    env_config = EnvConfig(clip=str(synthetic_clip_path))
    sim = Simulation(env_config, 4, nthread=1, clip=clip)
    times = np.array([0.0, 0.05, 0.11, 0.2])
    sim.reset(np.arange(4), times)
    sim.step(np.zeros((4, ACT)))  # a state off the reference
    obs = torch.as_tensor(sim.obs)
    torch.manual_seed(3)
    residual = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32, 16), residual=True))
    plain = GaussianPolicy(OBS, ACT, PolicyConfig(hidden=(32, 16)))
    plain.load_state_dict(residual.state_dict())
    with torch.no_grad():
        residual.mean_head.weight.normal_(0.0, 0.3)
        plain.mean_head.weight.copy_(residual.mean_head.weight)
        lo, hi = hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1]
        ahead = clip.qpos(sim.ref_time_s + env_config.lookahead_s)[:, hum.HINGE_QPOS]
        expected = (ahead - 0.5 * (lo + hi)) / (0.5 * (hi - lo))
        assert np.abs(expected).max() > 0.05  # the reference term is not negligible
        np.testing.assert_allclose((residual(obs) - plain(obs)).numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(residual.act(sim.obs), np.clip(plain(obs).numpy() + expected, -1, 1), atol=1e-5)
    save_checkpoint(tmp_path / "res.pt", residual, env_config)
    loaded, _, _ = load_checkpoint(tmp_path / "res.pt", env_config)
    assert loaded.config.residual
    with torch.no_grad():
        assert torch.equal(loaded(obs), residual(obs))


def test_residual_needs_the_full_observation_and_pd_targets(tmp_path):
    from types import SimpleNamespace

    from imitate.sft import new_policy

    with pytest.raises(ConfigError, match="obs_dim=20"):
        GaussianPolicy(20, ACT, PolicyConfig(residual=True))
    store = SimpleNamespace(env_config=EnvConfig(action_space="torque"), path=tmp_path / "t.h5")
    with pytest.raises(ConfigError, match="pd_target.*'torque'"):
        new_policy(store, PolicyConfig(residual=True))
