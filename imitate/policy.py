"""The Gaussian MLP policy, with its observation normaliser inside; save and load.

``GaussianPolicy(obs) -> mean action``; the action distribution is N(mean, exp(log_std)) with a
state-independent log-std. The mean is an MLP of the normalised observation, plus (optionally,
``PolicyConfig.linear_skip``) a linear map of it, plus (``PolicyConfig.residual``) the action
that aims the servos at the observed reference: the networks then learn only the correction.
With ``PolicyConfig.members`` M > 1 the mean is the average of M such MLPs from different
initial weights (an ensemble: SFT fits each member to the labels on its own loss; on the search
expert's walk labels 5 members changed neither the survival nor its spread over training seeds,
README). The normaliser ((obs - mean) / std, clipped to +-clip) lives in the module as buffers,
so a checkpoint alone maps raw observations to actions. A checkpoint is one file (torch.save of
plain data) holding the weights, the normaliser, the policy config and the env configuration it
was trained for; loading it for another env configuration is refused.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from . import humanoid as hum
from .atomic import replaced_on_success
from .config import EnvConfig
from .errors import CheckpointError, ConfigError
from .observation import OBS_NAMES
from .settings import PolicyConfig

# the raw observation's columns of the reference hinge angles ahead (the servo targets a
# reference-tracking expert aims at), in hinge order
REF_Q_COLUMNS = [OBS_NAMES.index(f"ref_q_{h}") for h in hum.HINGE_NAMES]

CHECKPOINT_FORMAT = "imitate.policy"
CHECKPOINT_VERSION = 1


def _mlp(obs_dim: int, act_dim: int, config: PolicyConfig) -> tuple[nn.Sequential, nn.Linear]:
    """A body (Linear + activation per hidden size) and a linear mean head starting near zero."""
    act = nn.ReLU if config.activation == "relu" else nn.Tanh
    layers, width = [], obs_dim
    for h in config.hidden:
        layers += [nn.Linear(width, h), act()]
        width = h
    head = nn.Linear(width, act_dim)
    nn.init.uniform_(head.weight, -1e-3, 1e-3)  # start near the middle of the range
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers), head


class GaussianPolicy(nn.Module):
    """obs (B, obs_dim) float32 -> mean action (B, act_dim); log_std (act_dim,).

    Member 0 is ``body`` + ``mean_head``; members 1..M-1 (an ensemble) are in ``more_members``,
    each an ``nn.Sequential(body, head)``; the linear skip and the log-std are shared."""

    def __init__(self, obs_dim: int, act_dim: int, config: PolicyConfig = PolicyConfig()):
        super().__init__()
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.body, self.mean_head = _mlp(obs_dim, act_dim, config)
        self.more_members = nn.ModuleList(nn.Sequential(*_mlp(obs_dim, act_dim, config))
                                          for _ in range(config.members - 1))
        self.skip = None
        if config.linear_skip:
            self.skip = nn.Linear(obs_dim, act_dim)
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
        self.log_std = nn.Parameter(torch.full((act_dim,), config.init_log_std))
        if config.residual and (obs_dim, act_dim) != (len(OBS_NAMES), hum.NU):
            raise ConfigError(f"a residual policy needs imitate's observation ({len(OBS_NAMES)}) and the 28 "
                              f"hinge actions; found obs_dim={obs_dim}, act_dim={act_dim}")
        lo, hi = (torch.as_tensor(hum.HINGE_RANGE[:, i], dtype=torch.float32) for i in (0, 1))
        # not saved: fixed by the humanoid (targets_to_action: (target - middle) / half range)
        self.register_buffer("_hinge_middle", 0.5 * (lo + hi), persistent=False)
        self.register_buffer("_hinge_half_range", 0.5 * (hi - lo), persistent=False)

    def set_normaliser(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Set the observation normaliser (std floored at 1e-3, so constant inputs stay finite)."""
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32))

    def normalise(self, obs: torch.Tensor) -> torch.Tensor:
        clip = self.config.obs_clip
        return ((obs - self.obs_mean) / self.obs_std).clamp(-clip, clip)

    def member_means(self, obs: torch.Tensor) -> torch.Tensor:
        """(M, B, act_dim): each member's mean action (the linear skip added to each)."""
        x = self.normalise(obs)
        means = torch.stack([self.mean_head(self.body(x))] + [member(x) for member in self.more_members])
        if self.skip is not None:
            means = means + self.skip(x)
        return means + self.reference_action(obs) if self.config.residual else means

    def reference_action(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, 28): the pd_target action aiming the servos at the reference ahead that the raw
        observation (B, obs_dim) carries."""
        return (obs[:, REF_Q_COLUMNS] - self._hinge_middle) / self._hinge_half_range

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.member_means(obs).mean(0)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self(obs), self.log_std.exp().expand(len(obs), -1))

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True, generator: torch.Generator | None = None) -> np.ndarray:
        """Actions (B, act_dim) float64 in [-1, 1] for observations (B, obs_dim)."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        mean = self(x)
        if not deterministic:
            mean = mean + self.log_std.exp() * torch.randn(mean.shape, generator=generator)
        return mean.clamp(-1.0, 1.0).double().numpy()


def save_checkpoint(path: str | os.PathLike, policy: GaussianPolicy, env_config: EnvConfig, **metadata) -> None:
    """One file: weights, normaliser, policy config, env config, metadata; written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "imitate_version": __version__,
        "policy_config": asdict(policy.config), "obs_dim": policy.obs_dim, "act_dim": policy.act_dim,
        "obs_names": list(OBS_NAMES), "env_config": env_config.to_json(),
        "state_dict": {k: v.detach().clone() for k, v in policy.state_dict().items()},
        "metadata": json.loads(json.dumps(metadata, default=str)),
    }
    with replaced_on_success(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike,
                    env_config: EnvConfig | None = None) -> tuple[GaussianPolicy, EnvConfig, dict]:
    """The policy, the env config it was trained for, and its metadata.

    If env_config is given and differs from the checkpoint's in what the policy sees or
    drives (EnvConfig.policy_key: clip, action space, rates, lookahead), raise CheckpointError.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path}: expected a policy checkpoint file (.pt), found a directory")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        raise CheckpointError(f"{path}: expected a policy checkpoint (.pt), found an HDF5 file (a demonstration "
                              "store? give it as --data)")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path}: a damaged or truncated checkpoint (its zip archive is incomplete)")
        raise CheckpointError(f"{path}: expected a policy checkpoint (.pt, a torch zip archive), found a file of "
                              f"another kind (it starts with {head!r})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a foreign or damaged archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: not a checkpoint imitate can read ({type(exc).__name__}: {first[:160]})") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: expected an imitate policy checkpoint, found something else")
    missing = [k for k in ("version", "env_config", "obs_names", "obs_dim", "act_dim", "policy_config",
                           "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: an imitate checkpoint without {missing}: damaged or from another version")
    if payload["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: expected checkpoint version {CHECKPOINT_VERSION}, found {payload['version']}")
    trained_for = EnvConfig.from_json(payload["env_config"])
    if payload["obs_names"] != list(OBS_NAMES):
        raise CheckpointError(f"{path}: trained for another observation layout ({len(payload['obs_names'])} dims)")
    if env_config is not None and env_config.policy_key() != trained_for.policy_key():
        wanted, had = env_config.policy_key(), trained_for.policy_key()
        diff = ", ".join(f"{k}: checkpoint {had[k]!r}, requested {wanted[k]!r}" for k in had if had[k] != wanted[k])
        raise CheckpointError(f"{path}: trained for another env configuration ({diff})")
    policy = GaussianPolicy(payload["obs_dim"], payload["act_dim"], PolicyConfig(**payload["policy_config"]))
    policy.load_state_dict(payload["state_dict"])
    policy.eval()
    return policy, trained_for, payload["metadata"]
