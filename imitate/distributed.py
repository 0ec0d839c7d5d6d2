"""The search expert's labels spread over Ray workers (``pip install 'imitate[ray]'``), and the
tracking expert prepared on one (``prepare_on_ray``).

``RayExpert`` stands where a ``SearchExpert`` stands (``label(sim)``, ``label_states``,
``provenance``): each of its ``workers`` Ray actors holds a search expert of the same clip and
settings, a state goes to the actor ``key % workers`` (its humanoid's or pass's number, so a
warm-started plan stays on the actor that made it), and the labels come back in the states'
order.  Labels, stores and checkpoints are then the same as in-process, whatever the number of
workers: a label depends on its state, its time and its key's own seed, never on which task
finished first.  (A cold search, the DAgger recipe's, is a function of the state and time alone;
a warm-started one also of its plan, which a restarted actor has lost: after a worker failure
its labels can differ.)

Ray's own fault tolerance is used: an actor whose process dies is restarted and its task retried
(``max_restarts``, ``max_task_retries``); nothing is appended twice because the store is written
by the driver alone, from the returned arrays.  The driver checks at start that every worker
imports this version of imitate, and names the node that does not.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from . import __version__
from . import humanoid as hum
from .config import EnvConfig
from .errors import ConfigError
from .experts.search import SearchConfig, SearchExpert
from .motion import MotionClip

RESTARTS = 3  # Ray's max_restarts and max_task_retries for each worker (and a task's max_retries)


def connect(address: str | None = None):
    """The ray module, connected: to the cluster at address ("auto": the running one), else a
    local instance of this machine's cores (started once per process)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the ray package: pip install 'imitate[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address if address not in (None, "", "local") else None, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
    return ray


def _prepared(clip, env_config, config, threads: int):
    """A Ray task: the tracking expert's preparation on threads rollout threads (the CPUs the task
    holds; threads do not change the result), returned as arrays (the driver caches them)."""
    from dataclasses import replace

    from .experts.tracking import TrackingExpert

    expert = TrackingExpert.computed(clip, env_config, replace(config, reconstruct=replace(config.reconstruct,
                                                                                           nthread=threads)))
    return expert.states, expert.ctrl, expert.a, expert.b, expert.info


def prepare_on_ray(clip: MotionClip, env_config: EnvConfig, config=None, *, address: str | None = None,
                   cpus: int | None = None, cache=None, say=None):
    """TrackingExpert.prepare with the preparation (when not cached) run as a Ray task holding
    cpus CPUs (default: 1) of the cluster at address; the driver writes the cache, and the labels
    (microseconds) stay in-process.  say(line) when the task starts."""
    from .experts.tracking import TrackingConfig, TrackingExpert

    config = config or TrackingConfig()

    def compute(clip, env_config, config, progress):
        ray = connect(address)
        task = ray.remote(num_cpus=cpus or 1, max_retries=RESTARTS)(_prepared)
        if say:
            say(f"preparing the tracking expert for '{clip.name}' on a Ray worker ({cpus or 1} CPUs) ...")
        states, ctrl, a, b, info = ray.get(task.remote(clip, env_config, config, cpus or 1))
        return TrackingExpert(clip, env_config, config, states, ctrl, a, b, info)

    return TrackingExpert.prepare(clip, env_config, config, cache=cache, compute=compute)


class _Worker:
    """One Ray actor: a search expert of its own, labelling the states sent to it."""

    def __init__(self, clip: MotionClip, env_config: EnvConfig, config: SearchConfig, nominal_targets=None):
        self.expert = SearchExpert(clip, env_config, config, nominal_targets)

    def identity(self) -> tuple[str, str, int]:
        """This worker's imitate version, node address and process id."""
        import os

        import ray

        from . import __version__ as version

        return version, ray.util.get_node_ip_address(), os.getpid()

    def label_states(self, states, times, keys):
        return self.expert.label_states(states, times, keys)

    def forget(self, keys) -> None:
        for k in keys:
            self.expert.plans.pop(int(k), None)

    def collect(self, policy, env_config: EnvConfig, env_ids, beta, steps, seed, mixing, segment_steps,
                action_noise, plan_labels=0) -> list[dict]:
        """dagger.collect on the envs env_ids of a round, with this worker's expert labelling."""
        import torch

        from .dagger import collect
        from .simulation import Simulation

        torch.set_num_threads(1)  # the workers are the parallelism
        sim = Simulation(env_config, len(env_ids), nthread=1, clip=self.expert.clip, env_ids=env_ids)
        return collect(sim, policy.act, self.expert, beta, steps, seed, mixing, segment_steps, None, action_noise,
                       plan_labels, nthread=1)


def _node_of(error: Exception) -> str:
    """The node a Ray task or actor failed on, from Ray's error text ("... (pid=..., ip=ADDRESS, ...)")."""
    import re

    found = re.search(r"\bip=([0-9A-Fa-f.:]+)", str(error))
    return found.group(1) if found else "(unknown)"


class RayExpert:
    """The search expert of clip, env_config and config (and nominal_targets: the guided
    expert's) with its labels computed by workers Ray actors (module docstring); address as for
    ``connect``."""

    def __init__(self, clip: MotionClip, env_config: EnvConfig, config: SearchConfig = SearchConfig(), *,
                 workers: int | None = None, address: str | None = None, nominal_targets: np.ndarray | None = None):
        ray = connect(address)
        self._ray = ray
        self.clip, self.env_config, self.config = clip, env_config, config
        self.workers = int(workers or ray.cluster_resources().get("CPU", 1))
        if self.workers < 1:
            raise ConfigError(f"--ray-workers must be >= 1; found {self.workers}")
        actor = ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS)(_Worker)
        # each actor plans on one thread: the workers are the parallelism
        one_thread = SearchConfig(**{**asdict(config), "nthread": 1})
        targets = None if nominal_targets is None else ray.put(np.asarray(nominal_targets, float))  # sent once
        self._actors = [actor.remote(clip, env_config, one_thread, targets) for _ in range(self.workers)]
        try:
            identities = ray.get([a.identity.remote() for a in self._actors])
        except Exception as exc:  # the worker could not import imitate, or failed building its expert
            raise ConfigError(f"the Ray worker on node {_node_of(exc)} could not start imitate's search expert "
                              f"({str(exc).strip().splitlines()[-1][:300]}): install imitate {__version__} on "
                              "every node") from None
        self.pids = [pid for _, _, pid in identities]  # the workers' processes (as started)
        for version, node, _ in identities:
            if version != __version__:
                raise ConfigError(f"the Ray worker on node {node} has imitate {version}; this driver has "
                                  f"{__version__}: install the same version on every node")
        self._provenance = SearchExpert(clip, env_config, config, nominal_targets).provenance()
        self.reconstructed_s: float | None = None  # as SearchExpert's (set by search.guided_expert)

    def provenance(self) -> dict:
        return dict(self._provenance)  # the same labeller as in-process: the labels are the same

    def label(self, sim) -> np.ndarray:
        """Labels (N, 28) for the humanoids of sim; a humanoid just reset starts a new plan."""
        keys = sim.env_ids
        reset = keys[sim.steps == 0]
        if len(reset) and self.config.warm_start:
            self._ray.get([a.forget.remote(reset[reset % self.workers == w]) for w, a in enumerate(self._actors)])
        return self.label_states(np.array(sim.batch.state), sim.ref_time_s.copy(), keys)

    def label_states(self, states: np.ndarray, times: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Labels (n, 28) of integration-state rows (n, nstate) at clip times (n,), state i on
        the actor keys[i] % workers; in the rows' order."""
        states, times, keys = np.atleast_2d(states), np.asarray(times, float), np.asarray(keys, int)
        owner = keys % self.workers
        rows = [np.flatnonzero(owner == w) for w in range(self.workers)]
        refs = {w: self._actors[w].label_states.remote(states[r], times[r], keys[r]) for w, r in enumerate(rows)
                if len(r)}
        out = np.empty((len(states), hum.NU))
        for w, labels in zip(refs, self._ray.get(list(refs.values())), strict=True):
            out[rows[w]] = labels
        return out

    def collect(self, policy, env_config: EnvConfig, num_envs: int, beta: float, steps: int, seed, mixing: str,
                segment_steps: int, action_noise: float, progress=None, plan_labels: int = 0) -> list[dict]:
        """dagger.collect's episodes for num_envs envs, env i collected by the worker i % workers
        (a Simulation of its slice, its own expert labelling, the learner policy sent once);
        the same episodes, in the same order, as collecting all of them in one process.
        progress(slices done, slices) as each worker's slice comes back."""
        ids = np.arange(num_envs)
        policy_ref = self._ray.put(policy)  # the learner's weights, once per round
        refs = [self._actors[w].collect.remote(policy_ref, env_config, ids[ids % self.workers == w], beta, steps,
                                               seed, mixing, segment_steps, action_noise, plan_labels)
                for w in range(min(self.workers, num_envs))]
        episodes, pending = [], list(refs)
        while pending:
            done, pending = self._ray.wait(pending, num_returns=1)
            if progress:
                progress(len(refs) - len(pending), len(refs))
        for part in self._ray.get(refs):
            episodes += part
        return sorted(episodes, key=lambda e: e["env"])  # stable: an env's episodes keep their order

    def close(self) -> None:
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []
