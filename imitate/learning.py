"""From a clip to a policy that performs it, in one call: ``learn(clip, out)`` (``imitate learn``);
many clips and one table of their results: ``zoo(clips, out)`` (``imitate zoo``).

The recipe is the pipeline's ``"search"`` (``pipeline.RECIPES``): the search expert alone from
phase 0 first (if it falls, learn goes down its ``LADDER`` to the ``"guided"`` recipe, the same
with the guided expert, and stops only if that one falls too), then a mocap store labelled by the
expert, SFT, then DAgger rounds with a residual learner until a round's own evaluation keeps at
least 80% of its episodes up for the whole horizon and so does its confirmation (as many
episodes as the final evaluation's, from other starts, ``confirmations.json``), or the rounds
(the label budget) run out; an optional TRPO stage; then the evaluation from phase 0.  No
per-clip settings: the defaults are the recipe.  Into ``out`` (default ``runs/learn-CLIP``; the
same call resumes a stopped run):
- ``policy.pt``: the final policy (TRPO's if it ran, else the confirmed DAgger round's, else the
  best round's by its own evaluation);
- ``summary.json``: every stage's evaluation (``final_evaluation`` names policy.pt's), the labels,
  env samples, wall time (``wall_s``: every call's, a killed one's up to its last round) and settings;
- ``learning_curve.csv`` / ``.png``: per DAgger round (TRPO's own, in ``trpo/``);
- ``best.mp4`` (and ``best.png``): the final policy beside its reference (where rendering works);
plus the store, the round checkpoints and state the stages keep.

``zoo``: each clip is learned into ``out/CLIP`` by ``learn`` with the same recipe (no per-clip
settings), one after another, or as Ray tasks (``address``; ``pip install 'imitate[ray]'``).
A clip whose ``summary.json`` already holds this recipe's result is not learned again, and an
unfinished one resumes where it stopped, so the same call resumes a stopped zoo.  After every
clip, ``out/zoo.md`` and ``out/zoo.csv`` hold the table so far: one row per clip with the expert
that labelled it, the final policy's evaluation from phase 0 (normalised return, survival,
episodes whole, the same from its confirmation's other starts, how they ended, joint and
end-effector errors), the labels, env samples and minutes.  A clip that cannot be learned (it
does not load, no expert performs it, or its store is of another env) gets a row that says
why, and the zoo goes on.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path

from . import __version__
from .atomic import replaced_on_success, write_text
from .errors import ConfigError, ExpertError, ExpertFalls, ImitateError
from .evaluation import summarize_endings
from .motion import load_clip
from .pipeline import (
    CONFIRMATIONS,
    FINE_TUNING,
    RECIPES,
    PipelineConfig,
    PipelineResult,
    confirmation_key,
    run_pipeline,
)
from .trpo import logged_iterations


def settings_json(recipe: PipelineConfig) -> dict:
    """recipe as summary.json records it (JSON-native)."""
    return json.loads(json.dumps(asdict(recipe), default=str))


@dataclass(frozen=True)
class LearnResult:
    policy: Path  # out/policy.pt
    summary: dict  # what out/summary.json holds
    pipeline: PipelineResult


# The recipes learn tries in order when none is given (its "ladder"): the first whose expert
# performs the clip alone from phase 0 (the recipe's expert check) learns it, since DAgger never
# outlives its expert.  The search's labels are the cheaper and teach balance (walk, crawl,
# kick); the guided expert performs clips the search cannot (punch and getup_facedown are learned
# from it) at several times its cost a label, after minutes reconstructing the clip once.
LADDER = ("search", "guided")


def recipe_of(clip: str, config: PipelineConfig | None = None, trpo_samples: int = 0) -> PipelineConfig:
    """The pipeline config learn runs for clip: config (default ``RECIPES["search"]``) on that
    clip, stopping at the first confirmed whole round, with a TRPO stage of trpo_samples if > 0
    (the recipe's own TRPO settings, else ``pipeline.FINE_TUNING``'s) and none if 0."""
    recipe = replace(config or RECIPES["search"], clip=str(clip), stop_when_whole=True)
    trpo = replace(recipe.trpo or FINE_TUNING, samples=trpo_samples) if trpo_samples > 0 else None
    return replace(recipe, trpo=trpo)


def ladder_of(clip: str, config: PipelineConfig | Sequence[PipelineConfig] | None = None,
              trpo_samples: int = 0) -> tuple[PipelineConfig, ...]:
    """The recipes learn tries for clip, in order (each as ``recipe_of`` makes it): config's if
    one is given, the given ones if a sequence, else ``LADDER``'s."""
    if config is None:
        config = tuple(RECIPES[name] for name in LADDER)
    configs = (config,) if isinstance(config, PipelineConfig) else tuple(config)
    if not configs or not all(isinstance(c, PipelineConfig) for c in configs):
        raise ConfigError(f"learn: config must be a PipelineConfig or a non-empty sequence of them; found {config!r}")
    return tuple(recipe_of(clip, c, trpo_samples) for c in configs)


def learn(clip: str, out: str | Path | None = None, *,
          config: PipelineConfig | Sequence[PipelineConfig] | None = None, trpo_samples: int = 0,
          video_seconds: float = 10.0, on_stage: Callable | None = None, on_round: Callable | None = None,
          on_iteration: Callable | None = None, on_progress: Callable[[str], None] | None = None,
          expert_factory: Callable | Mapping[str, Callable] | None = None) -> LearnResult:
    """Learn clip (a name or a path) into out (module docstring).  config: the recipe, or recipes
    tried in order until one's expert performs the clip alone (default ``LADDER``'s: the search
    recipe, then the guided one), each with its clip replaced by clip, stopping at the first
    confirmed whole round; ExpertError if every expert falls (when and why each fell).
    trpo_samples > 0 adds a TRPO stage of that many samples from the DAgger policy.
    expert_factory: as for ``run_pipeline`` (the recipe's search on Ray workers), for every
    recipe; or a mapping from an expert's name to one, for the recipes of that expert."""
    started = time.perf_counter()
    name = load_clip(clip).name
    out = Path(out if out is not None else f"runs/learn-{name}")
    if trpo_samples < 0:
        raise ConfigError(f"learn: trpo_samples must be >= 0; found {trpo_samples}")
    rungs = ladder_of(clip, config, trpo_samples)
    timing = out / "timing.json"  # wall time of every call so far, saved at each round (so a killed call counts)
    before = json.loads(timing.read_text())["wall_s"] if timing.exists() else 0.0

    def save_time(*_):
        if out.is_dir():
            write_text(timing, json.dumps({"wall_s": before + time.perf_counter() - started}))

    def round_done(r):
        save_time()
        if on_round:
            on_round(r)

    def iteration_done(it):
        save_time()
        if on_iteration:
            on_iteration(it)

    refusals: list[ExpertFalls] = []  # the recipes whose expert fell alone, in the ladder's order
    for i, recipe in enumerate(rungs):
        factory = expert_factory.get(recipe.expert) if isinstance(expert_factory, Mapping) else expert_factory
        try:
            result = run_pipeline(recipe, out, on_stage=on_stage, on_round=round_done, on_iteration=iteration_done,
                                  on_progress=on_progress, expert_factory=factory)
            break
        except ExpertFalls as exc:
            refusals.append(exc.with_traceback(None))  # (its frames would hold the fallen expert)
            if i + 1 == len(rungs):
                if len(refusals) == 1:
                    raise
                falls = "; ".join(e.fall() for e in refusals)
                raise ExpertError(f"{name}: no expert performs it alone from phase 0 ({falls}); DAgger cannot "
                                  f"outlive its expert, so no round was run ({exc.path}; --no-expert-check learns "
                                  f"from the {rungs[0].expert} expert anyway)") from None
            if on_progress:
                on_progress(f"{exc.fall()}: trying the {rungs[i + 1].expert} expert")
    final = result.checkpoints.get("+ TRPO") or result.best
    final_label = next(label for label, path in result.checkpoints.items() if path == final)
    policy = out / "policy.pt"
    with replaced_on_success(policy) as tmp:
        shutil.copyfile(final, tmp)
    labels = sum(r.new_steps for r in result.rounds)
    planned = sum(r.plan_steps for r in result.rounds)
    # following a round's plans re-simulates each label's step, then a step per state they label
    # (at least: the side simulation also steps the fallen until every plan has ended)
    plan_samples = sum(r.new_steps + r.plan_steps for r in result.rounds if r.plan_steps)
    mocap = result.rounds[0].total_steps
    logged = logged_iterations(out / "trpo")
    trpo_samples_done = logged[-1].samples if logged else 0
    summary = {
        "clip": name, "imitate_version": __version__, "policy": str(policy), "final": str(final.relative_to(out)),
        # total: the expert's own labels (a search each); plan: the states its plans reached, labelled by them
        "labels": {"mocap": mocap, "dagger": labels, "total": mocap + labels, "plan": planned},
        "env_samples": {"dagger": labels, "plan": plan_samples, "trpo": trpo_samples_done,
                        "total": labels + plan_samples + trpo_samples_done},
        "rounds": [asdict(r) for r in result.rounds],
        "stopped": (f"whole in {result.confirmation.full_horizon} of {result.confirmation.episodes} confirmation "
                    f"episodes" if result.confirmed else "label budget spent"),
        "confirmations": _confirmations(out, recipe, result.rounds),
        "evaluation": {label: ev.to_dict() for label, ev in result.evaluation.items()},
        "final_evaluation": final_label,  # the key in "evaluation" of policy.pt's
        "wall_s_this_call": time.perf_counter() - started,
        "wall_s": before + time.perf_counter() - started,  # every call's, up to its last finished round
        "settings": settings_json(recipe),
        # the ladder's recipes before this one, whose expert fell alone: its settings and when and why
        "refused": [{"settings": settings_json(r), "fell": e.fall()}
                    for r, e in zip(rungs[:len(refusals)], refusals, strict=True)],
        # a run resumed with other DAgger settings (the recipe changed since it began): from which
        # round each set ran (state.json's record; empty if one set ran throughout)
        "dagger_settings_history": json.loads((out / "state.json").read_text()).get("config_history", []),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    save_time()
    if video_seconds > 0:
        from .evaluation import policy_controller
        from .policy import load_checkpoint
        from .render import render_video

        try:
            net, env_config, _ = load_checkpoint(policy)
            render_video(policy_controller(net), env_config, out / "best.mp4", seconds=video_seconds)
        except ConfigError as exc:  # no offscreen OpenGL or no imageio here
            if on_progress:
                on_progress(f"no video: {exc}")
    return LearnResult(policy=policy, summary=summary, pipeline=result)


# DeepMimic's 15 humanoid clips, as the pybullet wheel ships them
CLASSIC_CLIPS = ("walk", "run", "jump", "crawl", "roll", "cartwheel", "backflip", "spin", "spinkick", "kick",
                 "punch", "dance_a", "dance_b", "getup_facedown", "getup_faceup")


@dataclass(frozen=True)
class ZooRow:
    """One clip's result: the final policy's evaluation from phase 0 and what it cost."""

    clip: str
    expert: str = ""  # the expert that labelled its rounds (the ladder's first that performs the clip alone)
    normalised_return: float | None = None  # mean over the evaluation's episodes
    survival_s: float | None = None  # mean [s]
    horizon_s: float | None = None
    whole: int | None = None  # episodes that survived the whole horizon
    episodes: int | None = None
    ended: str = ""  # how the episodes ended, grouped by cause
    joint_error_deg: float | None = None
    end_effector_error_cm: float | None = None
    labels: int | None = None  # expert labels: mocap round + DAgger rounds
    env_samples: int | None = None  # control steps of the learner's own env (DAgger, plans followed, TRPO)
    minutes: float | None = None  # wall time of learn's calls for this clip
    error: str = ""  # why the clip has no result
    # the final policy's confirmation, where its round had one (none for TRPO's): as many episodes
    # from other starts than the evaluation's, on which its round's fits were chosen (unbiased)
    confirmed_whole: int | None = None
    confirmed_return: float | None = None

    @classmethod
    def from_summary(cls, summary: dict) -> ZooRow:
        ev = summary["evaluation"][summary["final_evaluation"]]
        final_round = next((r["round"] for r in summary["rounds"] if r["checkpoint"] == summary["final"]), None)
        check = summary.get("confirmations", {}).get(str(final_round))  # none for a TRPO policy
        return cls(clip=summary["clip"], expert=summary["settings"]["expert"],
                   normalised_return=ev["normalised_return"]["mean"],
                   survival_s=ev["survival_s"]["mean"], horizon_s=ev["horizon_s"], whole=ev["full_horizon"],
                   episodes=ev["episodes"], ended=summarize_endings(ev["endings"]),
                   joint_error_deg=ev["joint_error_deg"]["mean"],
                   end_effector_error_cm=ev["end_effector_error_cm"]["mean"], labels=summary["labels"]["total"],
                   env_samples=summary["env_samples"]["total"], minutes=summary["wall_s"] / 60.0,
                   confirmed_whole=check["full_horizon"] if check else None,
                   confirmed_return=check["normalised_return"]["mean"] if check else None)


def _confirmations(out: Path, recipe: PipelineConfig, rounds) -> dict:
    """The confirmations of this run's rounds (round -> its evaluation), from out/CONFIRMATIONS
    (entries of an earlier run in the folder, or of other settings, left out)."""
    path = out / CONFIRMATIONS
    kept = json.loads(path.read_text()) if path.exists() else {}
    return {str(r.round): kept[str(r.round)]["evaluation"] for r in rounds
            if str(r.round) in kept and kept[str(r.round)]["key"] == confirmation_key(recipe, r, out)}


def finished_summary(folder: Path, recipe: PipelineConfig | Sequence[PipelineConfig]) -> dict | None:
    """folder's summary.json if learn finished there with this recipe's settings, else None.  For
    a ladder of recipes: with one of them, each recipe before it refused (its expert fell alone)."""
    path = folder / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if "final_evaluation" not in summary:
        return None
    rungs = (recipe,) if isinstance(recipe, PipelineConfig) else tuple(recipe)
    refused = [r["settings"] for r in summary.get("refused", [])]
    for k, rung in enumerate(rungs):
        if _same(summary.get("settings"), rung):
            earlier_refused = all(any(_same(s, r) for s in refused) for r in rungs[:k])
            return summary if earlier_refused else None
    return None


def _same(recorded, wanted) -> bool:
    """Settings a summary recorded (JSON) against today's (wanted: a config dataclass or a value).
    A setting the summary lacks was added since; a new setting's default keeps the old behaviour
    (the house rule), so it counts as the same only where wanted leaves it at its default."""
    if not is_dataclass(wanted):
        return recorded == json.loads(json.dumps(_plain(wanted), default=str))
    if not isinstance(recorded, dict):
        return False
    for f in fields(wanted):
        value = getattr(wanted, f.name)
        if f.name in recorded:
            if not _same(recorded[f.name], value):
                return False
        elif f.default is not MISSING:
            if value != f.default:
                return False
        elif f.default_factory is MISSING or value != f.default_factory():
            return False
    return True


def _plain(value):
    """value as settings_json records it: dataclasses inside lists, tuples and dicts as dicts."""
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _learn_one(clip: str, folder: str, config, trpo_samples: int, video_seconds: float) -> dict:
    """learn one clip; its summary (a Ray task runs this on a worker)."""
    return learn(clip, folder, config=config, trpo_samples=trpo_samples, video_seconds=video_seconds).summary


def zoo(clips=None, out: str | Path = "runs/zoo", *, config: PipelineConfig | Sequence[PipelineConfig] | None = None,
        trpo_samples: int = 0, video_seconds: float = 10.0, address: str | None = None, cpus_per_clip: int = 2,
        on_clip: Callable[[str, int, int], None] | None = None,
        on_row: Callable[[ZooRow], None] | None = None, learn_kwargs: dict | None = None) -> list[ZooRow]:
    """Learn every clip (names or paths; default ``CLASSIC_CLIPS``) into out/CLIP with learn's
    config (a recipe, or a ladder of them; default ``LADDER``'s) and write out/zoo.md and
    out/zoo.csv (module docstring); the rows in the clips' order.

    address: run each clip as a Ray task of cpus_per_clip CPUs (``distributed.connect``: "auto"
    joins the running cluster, "local" starts one here); out must then be a folder every node
    sees.  on_clip(clip, i, n) as clip i of n starts (in-process only); on_row(row) as each
    clip's row is ready; learn_kwargs: extra arguments of learn (its progress callbacks).
    """
    clips = [str(c) for c in (clips or CLASSIC_CLIPS)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, ZooRow] = {}
    pending: list[tuple[str, str, Path]] = []  # (clip as given, its name, its folder)
    for clip in clips:
        try:
            name = load_clip(clip).name
        except ImitateError as exc:
            rows[clip] = ZooRow(clip=clip, error=str(exc))
            continue
        folder = out / name
        done = finished_summary(folder, ladder_of(clip, config, trpo_samples))
        if done is not None:
            rows[clip] = ZooRow.from_summary(done)
        else:
            pending.append((clip, name, folder))
    for row in rows.values():
        if on_row:
            on_row(row)
    write_table(out, [rows[c] for c in clips if c in rows])

    def finish(clip: str, name: str, summary: dict | None, error: str = "") -> None:
        rows[clip] = ZooRow.from_summary(summary) if summary is not None else ZooRow(clip=name, error=error)
        if on_row:
            on_row(rows[clip])
        write_table(out, [rows[c] for c in clips if c in rows])

    if address is None:
        for i, (clip, name, folder) in enumerate(pending):
            if on_clip:
                on_clip(name, i, len(pending))
            try:
                summary = learn(clip, folder, config=config, trpo_samples=trpo_samples, video_seconds=video_seconds,
                                **(learn_kwargs or {})).summary
            except ImitateError as exc:  # this clip cannot be learned here; the others can
                finish(clip, name, None, str(exc))
                continue
            finish(clip, name, summary)
    elif pending:
        from .distributed import connect

        ray = connect(address)
        task = ray.remote(num_cpus=cpus_per_clip, max_retries=3)(_learn_one)
        refs = {task.remote(clip, str(folder.resolve()), config, trpo_samples, video_seconds): (clip, name)
                for clip, name, folder in pending}
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            clip, name = refs[ready[0]]
            try:
                finish(clip, name, ray.get(ready[0]))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), ImitateError) else None
                if cause is None:
                    raise
                finish(clip, name, None, str(cause))
    return [rows[c] for c in clips]


COLUMNS = ("clip", "expert", "normalised return", "survival [s]", "whole", "confirmed: whole, return", "how they ended",
           "joint error [deg]", "end-effector error [cm]", "labels", "env samples", "minutes")


def cells(row: ZooRow) -> list[str]:
    """row's table cells, in COLUMNS' order ("-" where it has no result)."""
    if row.error:
        return [row.clip, "-", "-", "-", "-", "-", f"not learned: {row.error}", "-", "-", "-", "-", "-"]
    confirmed = "-" if row.confirmed_whole is None else \
        f"{row.confirmed_whole} of {row.episodes}, {row.confirmed_return:.3f}"
    return [row.clip, row.expert, f"{row.normalised_return:.3f}", f"{row.survival_s:.2f} of {row.horizon_s:.3g}",
            f"{row.whole} of {row.episodes}", confirmed, row.ended, f"{row.joint_error_deg:.1f}",
            f"{row.end_effector_error_cm:.1f}", f"{row.labels:,}", f"{row.env_samples:,}", f"{row.minutes:.1f}"]


def write_table(out: Path, rows: list[ZooRow]) -> None:
    """out/zoo.md (a Markdown table, for the README) and out/zoo.csv (the rows' fields)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |" for r in rows]
    write_text(out / "zoo.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(ZooRow(clip="")).keys()))
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    write_text(out / "zoo.csv", buffer.getvalue())
