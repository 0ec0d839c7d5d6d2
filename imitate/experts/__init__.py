"""Experts: (simulator states, clip times) -> action labels, one protocol for all.

- ``pd``: PD servos on the reference (``pd.PDExpert``): tracks joints, cannot balance.
- ``search``: PD servos plus a short-horizon search on MuJoCo rollouts at every decision
  (``search.SearchExpert``): balances on walk, 0.3-0.9 s a label.
- ``tracking`` (``best``, the recommended one): time-varying linear feedback around a feasible
  trajectory of the clip reconstructed offline (``tracking.TrackingExpert``): microseconds a
  label, prepared once per clip and cached on disk.
- ``guided``: the search expert starting from that same reconstructed trajectory's targets
  (made periodic for a looping clip: ``search.guided_targets``) instead of the reference's
  (``search.SearchExpert`` with ``nominal_targets``, settings ``search.GUIDED_LABELS``): performs
  clips neither does alone (run, roll, getup_faceup), at the search's cost (0.5-2.5 s a label on
  2 cores) plus the tracking expert's preparation.

Every expert has ``label(sim) -> (N, 28)`` actions for the humanoids of a ``Simulation`` and
``provenance() -> dict`` (its kind and settings, recorded with the labels it makes).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

EXPERTS = ("pd", "search", "tracking", "guided", "best")
RECOMMENDED = "tracking"  # what --expert best means today


@runtime_checkable
class Expert(Protocol):
    def label(self, sim) -> np.ndarray:
        """Actions (N, 28) in [-1, 1] for the N humanoids of sim, from their states and clip times."""

    def provenance(self) -> dict:
        """The expert's kind and settings (JSON-able), recorded with its labels."""


def label(expert, sim) -> np.ndarray:
    """An expert's labels (N, 28) for the humanoids of a Simulation: ``expert.label(sim)``, or
    ``expert(qpos, qvel, time_s)`` for a plain callable."""
    if isinstance(expert, Expert):
        return expert.label(sim)
    return expert(sim.qpos.copy(), sim.qvel.copy(), sim.ref_time_s.copy())


def provenance_json(expert) -> str:
    """The expert's provenance as JSON (its class name for a plain callable)."""
    import json

    p = expert.provenance() if isinstance(expert, Expert) else {"kind": type(expert).__name__}
    return json.dumps(p, sort_keys=True, default=str)


def expert_name(provenance: dict) -> str:
    """The name (EXPERTS) of the expert a provenance describes: "guided" for the search around a
    reconstructed trajectory (a search with a nominal), else its kind."""
    return "guided" if provenance.get("kind") == "search" and provenance.get("nominal") else provenance["kind"]


def expert_id(expert) -> str:
    """A short name of an expert and its settings for a store round's checkpoint_id:
    expert:KIND:HASH, the hash of its provenance."""
    import hashlib
    import json

    text = provenance_json(expert)
    return f"expert:{json.loads(text)['kind']}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def make_expert(name: str, clip, env_config, *, search=None, tracking=None, progress=None):
    """The expert called name (EXPERTS) for a clip and EnvConfig; search / tracking: their
    configs (defaults if None; guided uses both); progress(done, total, what): the tracking
    expert's preparation (tracking and guided)."""
    from ..errors import ConfigError

    if name == "best":
        name = RECOMMENDED
    if name == "pd":
        from .pd import PDExpert

        return PDExpert(clip, env_config.action_space)
    if name == "search":
        from .search import SearchConfig, SearchExpert

        return SearchExpert(clip, env_config, search or SearchConfig())
    if name in ("tracking", "guided"):
        from .tracking import TrackingConfig, TrackingExpert

        prepared = TrackingExpert.prepare(clip, env_config, tracking or TrackingConfig(), progress=progress)
        if name == "tracking":
            return prepared
        from .search import GUIDED_LABELS, guided_expert

        return guided_expert(clip, env_config, search or GUIDED_LABELS, prepared)
    raise ConfigError(f"expert: expected one of {EXPERTS}; found {name!r}")
