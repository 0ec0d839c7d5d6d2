"""Exports of a demonstration store to the formats other libraries read: Minari and robomimic.

Minari (``pip install imitate[minari]``) holds episodes of T actions and T + 1 observations.
Our store keeps the observation before each action, so the observation after an episode's last
action is simulated again here from its stored state (qpos, qvel, clip time) and executed action,
in the store's own env configuration.  Which actions an episode carries is a choice:
``"labels"`` (the expert's, what behaviour cloning fits; the default) or ``"executed"`` (what
the simulator was given, which makes every transition the simulator's own).  Mocap episodes are
states sampled along the reference, not simulated trajectories: their consecutive observations
are not transitions, which the dataset's description says.

robomimic's layout is one HDF5 file: ``data/demo_N/{actions, rewards, dones, states, obs/KEY,
next_obs/KEY}`` with ``num_samples``, ``data`` attributes ``total`` and ``env_args`` (JSON), and
``mask/train``, ``mask/valid`` (demo names; our store's split).  The observation keys are the
observation's groups (``phase``, ``root``, ``joint_angles``, ...); ``states`` is qpos then qvel.
"""

from __future__ import annotations

import getpass
import json
import warnings
from pathlib import Path

import numpy as np

from .atomic import replaced_on_success
from .errors import ConfigError, StoreError
from .observation import OBS_GROUPS
from .simulation import Simulation
from .store import SOURCES, DemoStore

ACTIONS = ("labels", "executed")


def final_observations(store: DemoStore, last: dict[str, np.ndarray]) -> np.ndarray:
    """Observations (n, obs_dim) after each episode's last step: last holds, per episode, its
    last "qpos" (n, nq), "qvel" (n, nv), "time_s" (n,) and executed "actions" (n, 28)."""
    sim = Simulation(store.env_config, len(last["qpos"]), nthread=1)
    sim.set_state(last["qpos"], last["qvel"], last["time_s"])
    sim.step(last["actions"].astype(float))
    return sim.obs.copy()


def _episodes(store: DemoStore, actions: str, sources: list[str] | None):
    """(index rows, arrays of all their steps, each episode's (start, end) rows, the observation
    after each episode's last step) of the chosen sources.  A store episode with ends inside it
    (a "plan" episode: its plans one after another) is exported as one episode per piece, its
    index row repeated for each."""
    if actions not in ACTIONS:
        raise ConfigError(f"export: expected actions in {ACTIONS}, found {actions!r}")
    if sources is not None and not set(sources) <= set(SOURCES):
        raise ConfigError(f"export: expected sources among {SOURCES}, found {sources}")
    index = [e for e in store.episode_index() if sources is None or e["source"] in sources]
    if not index:
        raise StoreError(f"{store.path}: no episodes of the sources {sources} to export")
    fields = ("obs", "expert_actions", "actions", "reward", "terminated", "truncated", "qpos", "qvel", "time_s")
    data = store.load(fields, split=None, sources=sources)
    ends = np.cumsum([e["length"] for e in index])
    flagged = data["terminated"] | data["truncated"]
    pieces, spans = [], []
    for e, start, end in zip(index, ends - np.array([e["length"] for e in index]), ends, strict=True):
        inner = start + 1 + np.flatnonzero(flagged[start:end - 1])  # the rows after an end inside the episode
        for a, b in zip([start, *inner], [*inner, end], strict=True):
            pieces.append(e)
            spans.append((int(a), int(b)))
    last = np.array([b - 1 for _, b in spans])
    final = final_observations(store, {k: data[k][last] for k in ("qpos", "qvel", "time_s", "actions")})
    return pieces, data, spans, final


def export_robomimic(store: DemoStore, out: str | Path, *, actions: str = "labels",
                     sources: list[str] | None = None) -> int:
    """Write the store's episodes in robomimic's HDF5 layout at out (complete, then renamed into
    place); return the number of demos."""
    import h5py

    out = Path(out)
    if out.exists():
        raise StoreError(f"{out}: already exists; choose another path or delete it")
    index, data, spans, final = _episodes(store, actions, sources)
    key = "expert_actions" if actions == "labels" else "actions"
    groups = {name.replace(" ", "_"): cols for name, cols in OBS_GROUPS.items()}
    with replaced_on_success(out) as tmp, h5py.File(tmp, "w") as f:
        root = f.create_group("data")
        names = {"train": [], "valid": []}
        for i, ((a, b), e) in enumerate(zip(spans, index, strict=True)):
            demo = root.create_group(f"demo_{i}")
            obs = data["obs"][a:b]
            next_obs = np.concatenate([obs[1:], final[i:i + 1]])
            for name, cols in groups.items():
                demo[f"obs/{name}"] = obs[:, cols]
                demo[f"next_obs/{name}"] = next_obs[:, cols]
            demo["actions"] = data[key][a:b]
            demo["rewards"] = data["reward"][a:b].astype(np.float64)
            demo["dones"] = (data["terminated"][a:b] | data["truncated"][a:b]).astype(np.int64)
            demo["states"] = np.concatenate([data["qpos"][a:b], data["qvel"][a:b]], axis=1)
            demo.attrs["num_samples"] = b - a
            names[e["split"]].append(f"demo_{i}")
        root.attrs["total"] = int(sum(b - a for a, b in spans))
        root.attrs["env_args"] = json.dumps({"env_name": "imitate/Track-v0", "type": 2,  # robomimic's EnvType.GYM_TYPE
                                             "env_kwargs": json.loads(store.env_config.to_json())})
        for split, demos in names.items():
            f[f"mask/{split}"] = np.array(demos, dtype="S")
    return len(index)


def export_minari(store: DemoStore, dataset_id: str, *, actions: str = "labels",
                  sources: list[str] | None = None, author: str | None = None):
    """Write the store's episodes (of the given sources; None: all) as the local Minari dataset
    dataset_id (``namespace/name-vN``, under Minari's data path) and return it."""
    try:
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError:
        raise ConfigError("Minari export needs the minari package: pip install 'imitate[minari]'") from None
    import gymnasium

    if dataset_id in minari.list_local_datasets():
        raise StoreError(f"Minari dataset {dataset_id} already exists; delete it first "
                         f"(minari.delete_dataset({dataset_id!r})) or choose another name")
    index, data, spans, final = _episodes(store, actions, sources)
    key = "expert_actions" if actions == "labels" else "actions"
    buffers = []
    for i, (a, b) in enumerate(spans):
        truncated = data["truncated"][a:b].copy()
        terminated = data["terminated"][a:b].copy()
        if not (terminated[-1] or truncated[-1]):  # a store episode may stop without either flag
            truncated[-1] = True
        buffers.append(EpisodeBuffer(
            id=i, observations=np.concatenate([data["obs"][a:b], final[i:i + 1]]).astype(np.float32),
            actions=data[key][a:b].astype(np.float32), rewards=data["reward"][a:b].astype(np.float64).tolist(),
            terminations=terminated.tolist(), truncations=truncated.tolist()))
    kinds = sorted({e["source"] for e in index})
    what = "the expert's labels" if actions == "labels" else "the executed actions"
    description = (f"Exported by imitate from {store.path.name}: {len(index)} episodes ({', '.join(kinds)}) of "
                   f"{store.env_config.clip}; the actions are {what}."
                   + (" Mocap episodes are states sampled along the reference, not simulated trajectories."
                      if "mocap" in kinds else ""))
    env = gymnasium.make("imitate/Track-v0", **json.loads(store.env_config.to_json()))
    try:
        with warnings.catch_warnings():  # Minari's advice on the metadata left out (an e-mail, an eval env)
            warnings.filterwarnings("ignore", message=".*is set to None", category=UserWarning)
            return minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env, algorithm_name=f"imitate ({', '.join(kinds)})",
                author=author or getpass.getuser(), description=description, data_format="hdf5")
    finally:
        env.close()
