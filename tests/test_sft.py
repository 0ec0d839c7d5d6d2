"""SFT: minibatches, fitting known targets, best-epoch selection, early stopping, seeding, the
Gaussian NLL, training on a store's train split, the sft and evaluate commands, and seeded
start noise in evaluation."""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import synthetic_frames, write_clip

import imitate.sft as sft_module
from imitate.cli import main
from imitate.config import EnvConfig
from imitate.dataset import BuildConfig, build_mocap_store
from imitate.errors import ImitateError
from imitate.evaluation import evaluate, expert_controller
from imitate.experts.pd import PDExpert
from imitate.motion import load_clip
from imitate.policy import GaussianPolicy, PolicyConfig, load_checkpoint
from imitate.sft import SFTConfig, fit, sft_on_store
from imitate.store import Episode, iterate_batches

# ----- iterate_batches ---------------------------------------------------------------------


def _rows(n: int) -> dict[str, np.ndarray]:
    """Row k of every array encodes k, so a batch says which rows it holds."""
    return {"obs": np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32),
            "act": -np.arange(n, dtype=np.int64)}


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, batch_size", [(10, 3), (9, 3), (7, 7), (5, 8), (1, 1)])
def test_iterate_batches_covers_every_row_once(n, batch_size, shuffle):
    data = _rows(n)
    batches = list(iterate_batches(data, batch_size, shuffle=shuffle, seed=4))
    sizes = [len(b["obs"]) for b in batches]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    rows = np.concatenate([b["obs"][:, 0].numpy() for b in batches]).astype(int)
    assert sorted(rows.tolist()) == list(range(n))  # every row exactly once
    for b in batches:  # the fields of a batch stay aligned, and are torch tensors
        assert isinstance(b["obs"], torch.Tensor) and isinstance(b["act"], torch.Tensor)
        np.testing.assert_array_equal(b["act"].numpy(), -b["obs"][:, 0].numpy().astype(int))
        np.testing.assert_array_equal(b["obs"][:, 1].numpy(), b["obs"][:, 0].numpy())
    if not shuffle:
        assert rows.tolist() == list(range(n))

    kept = list(iterate_batches(data, batch_size, shuffle=shuffle, seed=4, drop_last=True))
    assert [len(b["obs"]) for b in kept] == [batch_size] * (n // batch_size)
    kept_rows = [int(r) for b in kept for r in b["obs"][:, 0]]
    assert kept_rows == rows.tolist()[:len(kept_rows)]  # the same order, the short tail dropped


def test_iterate_batches_seeding():
    data = _rows(200)

    def order(seed):
        return [int(r) for b in iterate_batches(data, 32, seed=seed) for r in b["obs"][:, 0]]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != list(range(200))  # shuffled
    assert sorted(order(2)) == list(range(200))


# ----- fit ---------------------------------------------------------------------------------

OBS_DIM, ACT_DIM = 12, 6
W = np.random.default_rng(0).normal(0.0, 0.5, (ACT_DIM, OBS_DIM))


def linear_data(n: int, seed: int, noise_std: float = 0.0) -> dict[str, np.ndarray]:
    """expert_actions = tanh(W obs) (+ Gaussian noise), float32 as a store gives them."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0.0, 1.0, (n, OBS_DIM))
    act = np.tanh(obs @ W.T) + noise_std * rng.normal(0.0, 1.0, (n, ACT_DIM))
    return {"obs": obs.astype(np.float32), "expert_actions": act.astype(np.float32)}


def small_policy(seed: int = 0) -> GaussianPolicy:
    torch.manual_seed(seed)
    return GaussianPolicy(OBS_DIM, ACT_DIM, PolicyConfig(hidden=(32,)))


def plain_mse(policy: GaussianPolicy, data: dict[str, np.ndarray]) -> float:
    with torch.no_grad():
        pred = policy(torch.from_numpy(data["obs"])).double().numpy()
    return float(np.mean((pred - data["expert_actions"].astype(np.float64)) ** 2))


def test_fit_learns_a_known_target():
    train, valid, test = linear_data(2000, 1), linear_data(500, 2), linear_data(500, 3)
    policy = small_policy()
    before = plain_mse(policy, test)
    epochs_seen = []
    result = fit(policy, train, valid, SFTConfig(epochs=15, batch_size=64, lr=5e-3, patience=15, threads=1),
                 progress=lambda epoch, epochs, tl, vl: epochs_seen.append((epoch, epochs)))
    variance = float(test["expert_actions"].astype(np.float64).var(axis=0).mean())
    assert before > 0.8 * variance  # the untrained policy predicts about 0
    assert plain_mse(policy, test) < 0.1 * variance  # held-out data
    assert result.train_samples == 2000 and result.valid_samples == 500
    assert epochs_seen == [(e, 15) for e in range(1, result.epochs_run + 1)]
    assert len(result.history) == result.epochs_run
    # the reported validation loss is that of the weights left in the policy
    assert result.valid_loss == pytest.approx(plain_mse(policy, valid), rel=1e-5)
    assert result.valid_mse == pytest.approx(result.valid_loss, rel=1e-12)
    assert result.valid_loss == pytest.approx(min(v for _, v in result.history), rel=1e-12)


def test_early_stopping_keeps_the_best_epoch():
    """Pure-noise labels: the validation loss cannot improve for long; training stops after
    `patience` epochs without improvement, and the best epoch's weights are restored."""
    rng = np.random.default_rng(5)
    noise = {name: {"obs": rng.normal(0, 1, (200, OBS_DIM)).astype(np.float32),
                    "expert_actions": rng.uniform(-1, 1, (200, ACT_DIM)).astype(np.float32)}
             for name in ("train", "valid")}
    policy = small_policy()
    result = fit(policy, noise["train"], noise["valid"],
                 SFTConfig(epochs=50, batch_size=32, lr=1e-2, patience=2, threads=1))
    valid_losses = [v for _, v in result.history]
    assert result.epochs_run < 50 and len(valid_losses) == result.epochs_run
    best = int(np.argmin(valid_losses)) + 1
    assert result.best_epoch == best and result.epochs_run == best + 2  # stopped after 2 epochs without gain
    assert valid_losses[-1] > valid_losses[best - 1]  # the last epoch's weights are worse ...
    assert plain_mse(policy, noise["valid"]) == pytest.approx(valid_losses[best - 1], rel=1e-5)  # ... not kept
    assert result.valid_loss == pytest.approx(valid_losses[best - 1], rel=1e-12)
    assert result.train_loss == pytest.approx(result.history[best - 1][0], rel=1e-12)


def test_fit_is_seeded():
    train, valid = linear_data(300, 6), linear_data(100, 7)

    def weights(seed):
        policy = small_policy(0)  # the same initial weights each time
        fit(policy, train, valid, SFTConfig(epochs=3, batch_size=32, seed=seed, patience=5, threads=1))
        return policy.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical
    assert not all(torch.equal(a[k], c[k]) for k in a)  # another seed: another minibatch order


@pytest.mark.parametrize("epoch_samples", [None, 70])
def test_fit_trains_as_a_plain_loop_over_iterate_batches(epoch_samples):
    """fit draws its minibatches as index tensors into the train split held once; the weights must
    be those of a plain loop written here: each epoch's rows drawn without replacement
    (default_rng([seed, 1])), shuffled by iterate_batches with the epoch's seed, one Adam step on
    the MSE per minibatch; bit for bit, also where the epoch ends in a
    partial batch (300 and 70 rows, batches of 32).  (torch's fused Adam, as fit's.)"""
    train, valid = linear_data(300, 18), linear_data(40, 19)
    config = SFTConfig(epochs=3, batch_size=32, patience=10, threads=1, seed=2, epoch_samples=epoch_samples)
    fitted = small_policy(3)
    fit(fitted, train, valid, config)

    torch.manual_seed(config.seed)
    by_hand = small_policy(3)
    adam = torch.optim.Adam(by_hand.parameters(), lr=config.lr, fused=True)  # fit's, one kernel for all
    losses = []
    for epoch in range(1, config.epochs + 1):
        seed = config.seed * 100003 + epoch
        data = {"obs": train["obs"], "act": train["expert_actions"]}
        if epoch_samples is not None:
            pick = np.random.default_rng([seed, 1]).choice(300, epoch_samples, replace=False)
            data = {k: v[pick] for k, v in data.items()}
        for batch in iterate_batches(data, config.batch_size, seed=seed):
            loss = ((by_hand.member_means(batch["obs"]) - batch["act"]) ** 2).mean()
            adam.zero_grad()
            loss.backward()
            adam.step()
        with torch.no_grad():
            losses.append(float(((by_hand(torch.from_numpy(valid["obs"])) - torch.from_numpy(
                valid["expert_actions"])) ** 2).mean()))
        if losses[-1] < min(losses[:-1], default=float("inf")):
            best = {k: v.clone() for k, v in by_hand.state_dict().items()}
    got = fitted.state_dict()
    assert all(torch.equal(got[k], best[k]) for k in best)


def test_nll_learns_the_label_noise():
    sigma = 0.2
    train, valid = linear_data(4000, 8, sigma), linear_data(1000, 9, sigma)
    policy = small_policy()
    result = fit(policy, train, valid, SFTConfig(loss="nll", epochs=30, batch_size=128, lr=1e-2, patience=30,
                                                 threads=1))
    log_std = policy.log_std.detach().numpy()
    np.testing.assert_allclose(log_std, np.log(sigma), atol=0.15)  # started at -1.0 (std 0.37)
    # the reported loss is the Gaussian NLL (summed over dims) of the restored weights
    with torch.no_grad():
        mu = policy(torch.from_numpy(valid["obs"])).double().numpy()
    s = np.exp(log_std.astype(np.float64))
    nll = (0.5 * ((valid["expert_actions"] - mu) / s) ** 2 + np.log(s) + 0.5 * np.log(2 * np.pi)).sum(1).mean()
    assert result.valid_loss == pytest.approx(nll, rel=1e-4, abs=1e-4)
    assert result.valid_mse == pytest.approx(plain_mse(policy, valid), rel=1e-5)


def test_mse_fit_leaves_log_std_alone():
    policy = small_policy()
    fit(policy, linear_data(200, 10), linear_data(50, 11), SFTConfig(epochs=2, batch_size=32, threads=1))
    assert torch.equal(policy.log_std.detach(), torch.full((ACT_DIM,), -1.0))


def test_fit_accepts_float64_arrays():
    train = {k: v.astype(np.float64) for k, v in linear_data(200, 12).items()}
    valid = {k: v.astype(np.float64) for k, v in linear_data(50, 13).items()}
    result = fit(small_policy(), train, valid, SFTConfig(epochs=1, batch_size=32, threads=1))
    assert result.epochs_run == 1 and np.isfinite(result.valid_loss)


def test_fit_without_a_finite_validation_loss_fails_clearly():
    valid = linear_data(50, 14)
    valid["expert_actions"][0, 0] = np.nan  # every epoch's validation loss is NaN
    with pytest.raises(ImitateError, match="valid"):
        fit(small_policy(), linear_data(100, 15), valid, SFTConfig(epochs=3, patience=2, batch_size=50, threads=1))


@pytest.mark.parametrize("epoch_samples, expected", [(None, 300), (1000, 300), (70, 70)])
def test_epoch_samples_caps_the_rows_seen_per_epoch(epoch_samples, expected):
    """Each epoch trains on epoch_samples distinct rows of the train split (all of it if fewer);
    the rows are identified by reading them back from the forward passes made in train mode."""
    train, valid = linear_data(300, 16), linear_data(50, 17)
    row_of = {row.tobytes(): k for k, row in enumerate(train["obs"])}
    policy = small_policy()
    seen_per_epoch, current = [], []
    member_means = policy.member_means  # what the training loss calls

    def spy(obs):
        if policy.training:
            current.extend(row_of[row.tobytes()] for row in obs.detach().numpy())
        return member_means(obs)

    policy.member_means = spy
    fit(policy, train, valid, SFTConfig(epochs=3, batch_size=32, patience=5, threads=1, epoch_samples=epoch_samples),
        progress=lambda *a: (seen_per_epoch.append(list(current)), current.clear()))
    assert [len(rows) for rows in seen_per_epoch] == [expected] * 3
    assert all(len(set(rows)) == expected for rows in seen_per_epoch)  # without replacement
    if expected < 300:  # a different subset each epoch
        assert len({frozenset(rows) for rows in seen_per_epoch}) == 3


def test_epoch_samples_must_be_positive():
    with pytest.raises(ImitateError, match="epoch_samples"):
        SFTConfig(epoch_samples=0)


# ----- on a store, and the commands --------------------------------------------------------


@pytest.fixture
def store(tmp_path, synthetic_clip_path):
    """4 mocap episodes of the synthetic clip; every 2nd one in the validation split."""
    return build_mocap_store(tmp_path / "synthetic.h5", EnvConfig(clip=str(synthetic_clip_path)),
                             BuildConfig(offsets=2, copies=1, valid_every=2))


def record_fit(monkeypatch) -> dict:
    """Make sft.fit record the train and valid arrays it is given, into the returned dict."""
    seen = {}
    real_fit = sft_module.fit

    def recording_fit(policy, train, valid, config, progress=None):
        seen["train"], seen["valid"] = train, valid
        return real_fit(policy, train, valid, config, progress)

    monkeypatch.setattr(sft_module, "fit", recording_fit)
    return seen


def test_sft_on_store_uses_the_train_split_and_the_store_statistics(store, monkeypatch):
    seen = record_fit(monkeypatch)
    policy, result = sft_on_store(store, SFTConfig(epochs=2, batch_size=8, threads=1),
                                  policy_config=PolicyConfig(hidden=(32,)))
    with h5py.File(store.path, "r") as f:  # plain h5py, not the store's reader
        train_ids, valid_ids = f["mask/train"][()].tolist(), f["mask/valid"][()].tolist()
        episodes = {i: {k: f[f"episodes/{i:07d}/{k}"][()] for k in ("obs", "expert_actions")}
                    for i in train_ids + valid_ids}
        stats = {k: f[f"stats/obs/{k}"][()] for k in ("count", "mean", "m2")}
    assert train_ids == [0, 2] and valid_ids == [1, 3]
    assert result.train_samples == sum(len(episodes[i]["obs"]) for i in train_ids)
    assert result.valid_samples == sum(len(episodes[i]["obs"]) for i in valid_ids)
    for split, ids in (("train", train_ids), ("valid", valid_ids)):
        for k in ("obs", "expert_actions"):
            np.testing.assert_array_equal(seen[split][k], np.concatenate([episodes[i][k] for i in ids]))
    assert stats["count"] == sum(len(e["obs"]) for e in episodes.values())
    std = np.maximum(np.sqrt(stats["m2"] / stats["count"]), 1e-3)
    assert (std == 1e-3).any()  # some observation dimensions are constant here: the floor matters
    np.testing.assert_allclose(policy.obs_mean.numpy(), stats["mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(policy.obs_std.numpy(), std, rtol=1e-6)
    assert policy.obs_dim == 179 and policy.act_dim == 28 and policy.config.hidden == (32,)


METRICS = ("normalised_return", "survival_s", "joint_error_deg", "end_effector_error_cm")


def _check_eval_json(text: str, episodes: int, horizon_s: float) -> dict:
    out = json.loads(text)
    for key in METRICS:
        assert set(out[key]) == {"mean", "std"}
        assert all(np.isfinite(v) for v in out[key].values())
    assert out["episodes"] == episodes and out["horizon_s"] == horizon_s
    assert 0.0 <= out["normalised_return"]["mean"] <= 1.0 and 0.0 <= out["survival_s"]["mean"] <= horizon_s
    return out


def test_sft_and_evaluate_commands(store, tmp_path, synthetic_clip_path, capsys):
    ckpt = tmp_path / "out" / "policy.pt"
    assert main(["sft", "--data", str(store.path), "--out", str(ckpt), "--epochs", "2", "--hidden", "32"]) == 0
    assert str(ckpt) in capsys.readouterr().out
    policy, trained_for, meta = load_checkpoint(ckpt, store.env_config)
    assert trained_for == store.env_config and policy.config.hidden == (32,)
    assert meta["store"] == str(store.path) and meta["sft_config"]["epochs"] == 2 and meta["sft"]["epochs_run"] <= 2

    assert main(["evaluate", str(ckpt), "--episodes", "2", "--seconds", "0.5", "--json"]) == 0
    _check_eval_json(capsys.readouterr().out, 2, 0.5)

    assert main(["evaluate", "--expert", "pd", "--clip", str(synthetic_clip_path), "--episodes", "2",
                 "--seconds", "0.5", "--json"]) == 0
    expert = _check_eval_json(capsys.readouterr().out, 2, 0.5)
    # the same numbers as the library call the command stands for (default start noise 0.01, seed 0)
    config = EnvConfig(clip=str(synthetic_clip_path))
    direct = evaluate(expert_controller(PDExpert(load_clip(config.clip), "pd_target")), config, episodes=2,
                      horizon_s=0.5, init_noise_rad=0.01, seed=0)
    assert expert == json.loads(json.dumps(direct.to_dict()))

    other = write_clip(tmp_path / "other.txt", synthetic_frames(seed=3))
    assert main(["evaluate", str(ckpt), "--clip", str(other), "--episodes", "1", "--seconds", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "another env configuration" in err and str(other) in err and "Traceback" not in err


# ----- evaluation's start noise ------------------------------------------------------------


def test_evaluate_start_noise_is_seeded(synthetic_clip_path):
    config = EnvConfig(clip=str(synthetic_clip_path))
    expert = expert_controller(PDExpert(load_clip(config.clip), "pd_target"))
    seen = []

    def controller(sim):  # the PD expert, recording the states each episode is in
        seen.append(sim.obs.copy())
        return expert(sim)

    def run(noise, seed):
        seen.clear()
        result = evaluate(controller, config, episodes=3, horizon_s=0.5, init_noise_rad=noise, seed=seed).to_dict()
        return result, np.stack(seen)  # (steps, episodes, obs_dim)

    noisy, obs = run(0.05, 1)
    assert noisy["normalised_return"]["std"] > 0 and noisy["joint_error_deg"]["std"] > 0
    assert np.abs(obs[0, 0] - obs[0, 1]).max() > 1e-3 and np.abs(obs[0, 1] - obs[0, 2]).max() > 1e-3
    again, obs_again = run(0.05, 1)
    assert again == noisy  # exactly reproduced
    np.testing.assert_array_equal(obs_again, obs)
    assert run(0.05, 2)[0] != noisy
    clean, obs = run(0.0, 1)
    assert len(obs) == 15
    np.testing.assert_array_equal(obs[:, 1:], np.broadcast_to(obs[:, :1], obs[:, 1:].shape))  # identical episodes
    for key in METRICS:
        assert clean[key]["std"] == pytest.approx(0.0, abs=1e-12)
    assert run(0.0, 2)[0] == clean  # the seed plays no part


# ----- ensembles and states before a fall -------------------------------------------------


def test_ensemble_loss_fits_each_member_on_its_own():
    """With members=3 the MSE loss is the average of each member's own MSE (written out per
    member), not the MSE of their average; fit then scores the average on validation."""
    torch.manual_seed(0)
    policy = GaussianPolicy(OBS_DIM, ACT_DIM, PolicyConfig(hidden=(32,), members=3))
    with torch.no_grad():
        for head in [policy.mean_head] + [m[1] for m in policy.more_members]:
            head.weight.normal_(0.0, 0.5)
    data = linear_data(64, 5)
    obs, act = torch.from_numpy(data["obs"]), torch.from_numpy(data["expert_actions"])
    with torch.no_grad():
        x = policy.normalise(obs)
        members = [policy.mean_head(policy.body(x))] + [m(x) for m in policy.more_members]
        each = [float(((m - act) ** 2).mean()) for m in members]
        average = float(((sum(members) / 3 - act) ** 2).mean())
        loss = float(sft_module._loss(policy, obs, act, "mse"))
    assert loss == pytest.approx(np.mean(each), rel=1e-5)
    assert abs(loss - average) > 1e-3  # the other reading would differ
    torch.manual_seed(1)
    policy = GaussianPolicy(OBS_DIM, ACT_DIM, PolicyConfig(hidden=(32,), members=3))
    train, valid = linear_data(2000, 1), linear_data(300, 2)
    result = fit(policy, train, valid, SFTConfig(epochs=15, batch_size=64, lr=5e-3, threads=1))
    assert result.valid_loss == pytest.approx(plain_mse(policy, valid), rel=1e-5)  # the ensemble's average
    assert result.valid_loss < 0.1 * float(valid["expert_actions"].var(axis=0).mean())


def test_steps_before_fall_against_a_loop_over_episodes():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 12, 30)
    fell = rng.random(30) < 0.5
    terminated = np.concatenate([(np.arange(n) == n - 1) & f for n, f in zip(lengths, fell, strict=True)])
    truncated = np.concatenate([(np.arange(n) == n - 1) & ~f for n, f in zip(lengths, fell, strict=True)])
    want = []
    for n, f in zip(lengths, fell, strict=True):
        for i in range(n):
            want.append(n - 1 - i if f else None)
    got = sft_module.steps_before_fall(terminated, truncated)
    for g, w in zip(got, want, strict=True):
        assert g == w if w is not None else g > 10**9


@pytest.mark.parametrize("seconds", [0.0, 0.1, 0.25])
def test_drop_before_fall_leaves_out_the_last_states_of_falling_episodes(store, monkeypatch, seconds):
    """A round of 6 learner-like episodes, 4 ending in a fall: training sees every state except
    those of a falling episode less than `seconds` before its last step, in both splits."""
    dt = store.env_config.control_dt
    rng = np.random.default_rng(0)
    episodes = []
    for i, (length, fell) in enumerate([(20, True), (9, False), (3, True), (15, True), (12, False), (11, True)]):
        episodes.append(Episode(
            obs=rng.normal(size=(length, 179)).astype(np.float32),
            expert_actions=rng.uniform(-1, 1, (length, 28)).astype(np.float32),
            actions=np.zeros((length, 28), np.float32), qpos=np.zeros((length, 35)), qvel=np.zeros((length, 34)),
            time_s=np.arange(length) * dt, phase=np.zeros(length, np.float32), reward=np.ones(length, np.float32),
            terminated=(np.arange(length) == length - 1) & fell, truncated=(np.arange(length) == length - 1) & ~fell,
            source="dagger", clip=store.env_config.clip, seed=i))
    store.append_round(episodes, round=1, env_config=store.env_config, model_hash=store.model_hash)
    seen = record_fit(monkeypatch)
    sft_on_store(store, SFTConfig(epochs=1, batch_size=8, threads=1, drop_before_fall_s=seconds),
                 policy_config=PolicyConfig(hidden=(8,)))
    with h5py.File(store.path, "r") as f:  # the reference: plain h5py, one episode at a time
        for split in ("train", "valid"):
            rows = []
            for e in f[f"mask/{split}"][()]:
                g = f[f"episodes/{e:07d}"]
                n = len(g["obs"])
                for i in range(n):
                    if not (g["terminated"][n - 1] and (n - 1 - i) * dt < seconds - 1e-12):
                        rows.append(g["obs"][i])
            np.testing.assert_array_equal(seen[split]["obs"], np.array(rows))
    if seconds == 0.25:  # 0.25 s is 7.5 steps: states 0..7 steps before a fall go
        assert len(seen["train"]["obs"]) + len(seen["valid"]["obs"]) == sum(len(e) for e in store_episodes(store)) \
            - (8 + 3 + 8 + 8)


def store_episodes(store):
    with h5py.File(store.path, "r") as f:
        return [f[f"episodes/{e:07d}/obs"][()] for e in sorted(int(k) for k in f["episodes"])]


def test_drop_before_fall_must_not_be_negative():
    with pytest.raises(ImitateError, match="drop_before_fall_s"):
        SFTConfig(drop_before_fall_s=-0.1)
