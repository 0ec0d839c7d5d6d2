"""Exports of a demonstration store to the formats other libraries read: Minari.

Minari (``pip install imitate[minari]``) holds episodes of T actions and T + 1 observations.
Our store keeps the observation before each action, so the observation after an episode's last
action is simulated again here from its stored state (qpos, qvel, clip time) and executed action,
in the store's own env configuration.  Which actions an episode carries is a choice:
``"labels"`` (the expert's, what behaviour cloning fits; the default) or ``"executed"`` (what
the simulator was given, which makes every transition the simulator's own).  Mocap episodes are
states sampled along the reference, not simulated trajectories: their consecutive observations
are not transitions, which the dataset's description says.
"""

from __future__ import annotations

import getpass
import json
import warnings

import numpy as np

from .env import Simulation
from .errors import ConfigError, StoreError
from .store import SOURCES, DemoStore

ACTIONS = ("labels", "executed")


def final_observations(store: DemoStore, last: dict[str, np.ndarray]) -> np.ndarray:
    """Observations (n, obs_dim) after each episode's last step: last holds, per episode, its
    last "qpos" (n, nq), "qvel" (n, nv), "time_s" (n,) and executed "actions" (n, 28)."""
    sim = Simulation(store.env_config, len(last["qpos"]), nthread=1)
    sim.set_state(last["qpos"], last["qvel"], last["time_s"])
    sim.step(last["actions"].astype(float))
    return sim.obs.copy()


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

    if actions not in ACTIONS:
        raise ConfigError(f"export: expected actions in {ACTIONS}, found {actions!r}")
    if sources is not None and not set(sources) <= set(SOURCES):
        raise ConfigError(f"export: expected sources among {SOURCES}, found {sources}")
    if dataset_id in minari.list_local_datasets():
        raise StoreError(f"Minari dataset {dataset_id} already exists; delete it first "
                         f"(minari.delete_dataset({dataset_id!r})) or choose another name")
    index = [e for e in store.episode_index() if sources is None or e["source"] in sources]
    if not index:
        raise StoreError(f"{store.path}: no episodes of the sources {sources} to export")
    fields = ("obs", "expert_actions", "actions", "reward", "terminated", "truncated", "qpos", "qvel", "time_s")
    data = store.load(fields, split=None, rounds=None, sources=sources)
    ends = np.cumsum([e["length"] for e in index])
    starts = ends - np.array([e["length"] for e in index])
    last = {k: data[k][ends - 1] for k in ("qpos", "qvel", "time_s", "actions")}
    final = final_observations(store, last)
    key = "expert_actions" if actions == "labels" else "actions"
    buffers = []
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
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
