"""The main job's recipes: a store from the clip, SFT and DAgger rounds, TRPO (optional), evaluation.

Named recipes (``RECIPES``): ``"pd"`` (``PipelineConfig()``'s defaults, about a minute: the PD
expert, which tracks joints but cannot balance, so its policies fall within 1.5 s: the teaching
example, ``imitate pipeline --expert pd``), ``"search"`` (``imitate learn``'s: the search expert
with labels a learner can fit and the planner at 150 Hz, 2 plan labels a search and the best of 4
fits a round, up to 12 rounds with a residual learner, no TRPO: on walk a policy that walks),
``"main"`` (``imitate pipeline``'s: the search recipe on a small budget, at most 6 rounds and a
5 s expert check; on a fresh clone 27 minutes on 2 cores, walk walks) and ``"guided"`` (the
search recipe labelled by the guided expert: the search around the tracking expert's
reconstructed trajectory, at the env's 600 Hz; it performs clips the search does not, at several
times its cost a label).

``run_pipeline(config, run_dir)`` runs it into run_dir (default ``runs/pipeline-CLIP``):
- ``CLIP.h5``: the store; round 0 is built from mocap, labelled by the expert, if missing;
- ``round_NNN.pt``, ``state.json``: SFT (round 0) and the DAgger rounds (imitate.dagger);
- ``trpo/``: TRPO fine-tuning of the DAgger policy kept (the confirmed round's, else the best
  round's by its own evaluation; imitate.trpo), unless config.trpo is None
  (``imitate pipeline`` adds its learning_curve.png);
then every policy (and the PD expert, on the pd recipe) is evaluated from phase 0.  Killed at any point, the same
call resumes: an existing store is reused, and finished rounds and TRPO iterations do not run
again (the evaluation does).  Nothing here prints: stages and progress go to callbacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import humanoid as hum
from .config import EnvConfig
from .dagger import DAggerConfig, DAggerTrainer, RoundResult, best_round, finished_rounds
from .dataset import BuildConfig, build_mocap_store
from .errors import ConfigError, ExpertFalls
from .evaluation import EvalResult, evaluate, expert_controller, policy_controller
from .experts import make_expert
from .experts.pd import PDExpert
from .experts.search import GUIDED_LABELS, LEARN_LABELS, SearchConfig
from .experts.tracking import TrackingConfig
from .motion import load_clip
from .policy import PolicyConfig, load_checkpoint
from .store import DemoStore
from .trpo import STATE_FILE, IterationLog, TRPOConfig, start

PIPELINE_EXPERTS = ("pd", "search", "guided")  # the experts a recipe can name (the tracking one does not teach)
STAGES = ("expert", "store", "dagger", "trpo", "evaluation")
EXPERT_CHECK = "expert_check.json"  # in the run folder: each expert alone from phase 0, by name (config.expert_first)
CONFIRMATIONS = "confirmations.json"  # in the run folder: whole rounds evaluated again (config.stop_when_whole)


@dataclass(frozen=True)
class PipelineConfig:
    """The main job; the defaults are the PD recipe's (``imitate pipeline --expert pd``: about a
    minute on 2 cores); ``RECIPES`` holds the others."""

    clip: str = "walk"  # clip name or path
    action_space: str = "pd_target"  # "pd_target" or "torque"
    expert: str = "pd"  # "pd", "search" or "guided": labels the store and every DAgger round
    search: SearchConfig = LEARN_LABELS  # for "search" and "guided" (frozen: one shared default is safe)
    tracking: TrackingConfig = TrackingConfig()  # for "guided": the reconstruction of the trajectory it starts from
    build: BuildConfig = field(default_factory=lambda: BuildConfig(offsets=8, copies=8))  # the mocap round
    dagger: DAggerConfig = field(default_factory=DAggerConfig)  # 3 rounds of 8 envs x 150 steps
    trpo: TRPOConfig | None = field(default_factory=lambda: TRPOConfig(samples=8192))  # None: no TRPO stage
    eval_episodes: int = 3  # episodes per controller in the final evaluation
    eval_horizon_s: float | None = None  # None: 20 s for a looping clip, else the clip's length
    eval_init_noise_rad: float = 0.01  # std of the starting hinge-angle noise, so episodes differ
    # stop DAgger at the first round (after round 0) whose own evaluation kept at least
    # stop_share of its episodes up for the whole horizon and whose confirmation does too:
    # eval_episodes more episodes from other starts (a round's own evaluation is a few episodes:
    # a round whole in 2 may walk 2 of 10); dagger.rounds is then the most it runs (the label budget)
    stop_when_whole: bool = False
    stop_share: float = 0.8
    # first run the expert alone from phase 0 (one episode of expert_check_s, else of the evaluation horizon, kept in
    # run_dir/expert_check.json); if it falls, stop with ExpertFalls saying when and why: DAgger
    # never outlives its expert, so rounds would be spent in vain.  Off for the pd recipe, whose
    # expert cannot balance by design (the teaching example)
    expert_first: bool = False
    expert_check_s: float | None = None  # that episode's horizon [s]; None: the evaluation's

    def __post_init__(self):
        if isinstance(self.clip, os.PathLike):
            object.__setattr__(self, "clip", str(self.clip))
        if not isinstance(self.clip, str) or not self.clip:
            raise ConfigError(f"PipelineConfig.clip must be a clip name or path; found {self.clip!r}")
        if self.expert not in PIPELINE_EXPERTS:
            raise ConfigError(f"PipelineConfig.expert must be one of {PIPELINE_EXPERTS}; found {self.expert!r}")
        if self.action_space not in hum.ACTION_SPACES:
            raise ConfigError(f"PipelineConfig.action_space must be one of {hum.ACTION_SPACES}; "
                              f"found {self.action_space!r}")
        for name, kind in (("build", BuildConfig), ("dagger", DAggerConfig), ("trpo", TRPOConfig)):
            value = getattr(self, name)
            if not isinstance(value, kind) and not (name == "trpo" and value is None):
                raise ConfigError(f"PipelineConfig.{name} must be a {kind.__name__}"
                                  f"{' or None' if name == 'trpo' else ''}; found {type(value).__name__}")
        if not isinstance(self.eval_episodes, int) or self.eval_episodes < 1:
            raise ConfigError(f"PipelineConfig.eval_episodes must be an integer >= 1; found {self.eval_episodes!r}")
        if self.eval_horizon_s is not None and not self.eval_horizon_s > 0:
            raise ConfigError(f"PipelineConfig.eval_horizon_s must be > 0 or None; found {self.eval_horizon_s}")
        if not self.eval_init_noise_rad >= 0:
            raise ConfigError(f"PipelineConfig.eval_init_noise_rad must be >= 0; found {self.eval_init_noise_rad}")
        if self.dagger.policy.residual and self.action_space != "pd_target":
            raise ConfigError(f"PipelineConfig: the {self.expert} recipe's residual learner adds servo targets, so it "
                              f"needs the pd_target action space; found {self.action_space!r} (the pd recipe takes "
                              "torque)")
        if self.expert_check_s is not None and not self.expert_check_s > 0:
            raise ConfigError(f"PipelineConfig.expert_check_s must be > 0 or None; found {self.expert_check_s}")
        if not 0 < self.stop_share <= 1:
            raise ConfigError(f"PipelineConfig.stop_share must be in (0, 1]; found {self.stop_share}")


RECIPES = {
    "pd": PipelineConfig(),
    # the DAgger recipe of docs/search_expert.md, planner at 150 Hz, 64 candidates a label; each
    # round evaluated with 5 episodes (a policy's episodes cost seconds; 2 told a round that walks
    # 8 of 10 from one that walks 2 of 10 badly); 2 plan labels a search (2 more labels for the
    # physics of 2 control steps) and the best of 4 fits a round (seconds each): on walk round 4
    # walked 5 of 5, 12 of 20 from other starts, where without them it fell at 3.0 s
    "search": PipelineConfig(expert="search", build=BuildConfig(offsets=4, copies=4),
                             dagger=DAggerConfig(rounds=12, steps_per_env=100, policy=PolicyConfig(residual=True),
                                                 eval_episodes=5, eval_horizon_s=20.0, plan_labels=2, fits=4),
                             trpo=None, eval_episodes=5, expert_first=True),
}
# TRPO from a DAgger policy that balances (learn's --trpo-samples, where a recipe has no TRPO stage
# of its own): exploration noise e^-4 = 0.018 action units.  TRPOConfig's default (at least e^-1 =
# 0.37) makes a walking policy fall within a second, and a policy that falls is not improved by
# TRPO (docs/trpo.md: from walk's DAgger policy, e^-4 gave 0.79 -> 0.84 in 1M samples).  A quarter
# of its episodes start from the standing start, as the evaluation's do: one walk TRPO run without
# them lost its balance from phase 0 (falls at 3 s); learn walk with them reached NR 0.938 (another
# run from the same DAgger policy without them: 0.857 against 0.875 at 1.43M; docs/trpo.md)
FINE_TUNING = TRPOConfig(set_log_std=-4.0, zero_start_share=0.25)
# the same recipe labelled by the guided expert, at the env's own physics rate (search.GUIDED_LABELS)
RECIPES["guided"] = replace(RECIPES["search"], expert="guided", search=GUIDED_LABELS)
# the main job (`imitate pipeline`): the search recipe on a small budget, to show a newcomer a
# humanoid that walks in minutes: the expert checked over 5 s (the clips it cannot perform fall
# within 3 s) instead of the whole horizon, and at most MAIN_ROUNDS rounds (walk: round 4)
MAIN_ROUNDS = 6
RECIPES["main"] = replace(RECIPES["search"], dagger=replace(RECIPES["search"].dagger, rounds=MAIN_ROUNDS),
                          expert_check_s=5.0, stop_when_whole=True)


@dataclass(frozen=True)
class Stage:
    """A stage as it starts, reported to run_pipeline's on_stage."""

    name: str  # one of STAGES, in that order ("trpo" only with config.trpo)
    clip: str  # the clip's name
    run_dir: Path
    path: Path  # store: the store; dagger: the store it grows; trpo: its run folder; evaluation: run_dir
    resumed: bool = False  # earlier work at path is reused: the store, finished rounds, a TRPO checkpoint
    expert: str = ""  # the recipe's expert (config.expert), which labels every round


@dataclass(frozen=True)
class PipelineResult:
    """What the pipeline made and measured."""

    clip: str  # the clip's name
    run_dir: Path
    store: Path
    rounds: list[RoundResult]  # every DAgger round, 0 (SFT) first
    iterations: list[IterationLog]  # the TRPO iterations this call ran (none if skipped or already done)
    checkpoints: dict[str, Path]  # "SFT (round 0)", "DAgger (round K)", its best round, "+ TRPO" -> the file
    evaluation: dict[str, EvalResult]  # ("PD expert" and) each checkpoint's label -> its evaluation
    best: Path | None = None  # the confirmed round's checkpoint, else the best DAgger round's (by its own evaluation)
    confirmed: RoundResult | None = None  # the round it stopped at, whole in its confirmation (stop_when_whole)
    confirmation: EvalResult | None = None  # that confirmation


def run_pipeline(config: PipelineConfig = PipelineConfig(), run_dir: str | os.PathLike | None = None, *,
                 on_stage: Callable[[Stage], None] | None = None,
                 on_round: Callable[[RoundResult], None] | None = None,
                 on_iteration: Callable[[IterationLog], None] | None = None,
                 on_progress: Callable[[str], None] | None = None,
                 expert_factory: Callable | None = None) -> PipelineResult:
    """Run (or resume) the main job into run_dir (module docstring).

    expert_factory(clip, env_config): the expert that labels, in place of config.expert's own
    (e.g. ``distributed.RayExpert`` of config.search: the same labels, on Ray workers).

    on_stage: each Stage as it starts; on_round: each DAgger round it finishes (not those a
    resumed run had finished); on_iteration: each TRPO iteration it runs; on_progress: notes in
    words (DAgger's steps, where TRPO resumes).
    """
    clip = load_clip(config.clip)
    run_dir = Path(run_dir if run_dir is not None else f"runs/pipeline-{clip.name}")
    env_config = EnvConfig(clip=config.clip, action_space=config.action_space)
    store_path = run_dir / f"{clip.name}.h5"

    def stage(name: str, path: Path, resumed: bool = False) -> None:
        if on_stage:
            on_stage(Stage(name, clip.name, run_dir, path, resumed, config.expert))

    if store_path.exists():
        _check_store(store_path, env_config)
        env_config = DemoStore(store_path).env_config  # every stage in the env the store was built for
    expert = (expert_factory(clip, env_config) if expert_factory is not None
              else make_expert(config.expert, clip, env_config, search=config.search, tracking=config.tracking,
                               progress=_preparation_notes(clip.name, on_progress)))
    try:  # the expert labels up to the last DAgger round
        begun = (run_dir / "state.json").exists() and not (run_dir / EXPERT_CHECK).exists()
        if config.expert_first and not begun:  # (a run begun before the check existed goes on unchecked)
            stage("expert", run_dir / EXPERT_CHECK, _checked_before(run_dir / EXPERT_CHECK, config.expert))
            check_expert(config, expert, env_config, run_dir, on_progress)
        if store_path.exists():  # (after the check: learn's ladder reads a refused expert's check back here)
            _check_labeller(store_path, expert)
        stage("store", store_path, store_path.exists())
        if not store_path.exists():
            build_mocap_store(store_path, env_config, config.build, expert=expert)

        stage("dagger", store_path, bool(finished_rounds(run_dir)))
        trainer = DAggerTrainer(run_dir, store_path, config.dagger, expert=expert, on_round=on_round,
                                on_progress=on_progress)
        confirmed = confirmation = None
        with trainer.store.held_for_run():
            trainer.start()
            while True:
                latest = trainer.results[-1]
                if config.stop_when_whole and whole_enough(latest, config.stop_share):
                    check = confirm_round(config, latest, env_config, run_dir, on_progress)
                    if check.full_horizon >= config.stop_share * check.episodes - 1e-9:
                        confirmed, confirmation = latest, check
                        break
                if latest.round >= config.dagger.rounds:
                    break
                trainer.round(latest.round + 1)
    finally:  # free what the expert holds (a RayExpert's workers) for what comes next, e.g. learn's next expert
        if hasattr(expert, "close"):
            expert.close()
    rounds = trainer.results
    last = f"DAgger (round {rounds[-1].round})"
    checkpoints = {"SFT (round 0)": run_dir / rounds[0].checkpoint, last: run_dir / rounds[-1].checkpoint}
    best = confirmed or best_round(rounds[1:] or rounds)
    if best.round != rounds[-1].round:
        checkpoints[f"DAgger (best: round {best.round})"] = run_dir / best.checkpoint

    iterations = []
    if config.trpo is not None:
        trpo_dir = run_dir / "trpo"
        _check_trpo_settings(trpo_dir, config.trpo, run_dir / best.checkpoint)
        stage("trpo", trpo_dir, (trpo_dir / STATE_FILE).exists())
        # from the round DAgger keeps, not the last: rounds can regress (a budget spent past the best)
        trainer = start(trpo_dir, env_config, config.trpo, run_dir / best.checkpoint, on_progress=on_progress)
        iterations = trainer.run(on_iteration)
        checkpoints["+ TRPO"] = trpo_dir / "policy.pt"

    stage("evaluation", run_dir)
    controllers = {"PD expert": expert_controller(PDExpert(clip, config.action_space))} if config.expert == "pd" \
        else {}  # the search expert alone would take minutes: its policies are what is measured
    for label, path in checkpoints.items():
        controllers[label] = policy_controller(load_checkpoint(path, env_config)[0])
    evaluation = {label: evaluate(controller, env_config, episodes=config.eval_episodes,
                                  horizon_s=config.eval_horizon_s, init_noise_rad=config.eval_init_noise_rad)
                  for label, controller in controllers.items()}
    return PipelineResult(clip=clip.name, run_dir=run_dir, store=store_path, rounds=rounds, iterations=iterations,
                          checkpoints=checkpoints, evaluation=evaluation, best=run_dir / best.checkpoint,
                          confirmed=confirmed, confirmation=confirmation)


def _check_trpo_settings(trpo_dir: Path, config: TRPOConfig, init: Path) -> None:
    """Refuse to resume a TRPO stage begun with other settings than config's (its budget and
    threads aside) or from another checkpoint than init: a resumed run keeps its own policy noise
    and state, so the summary would record settings it did not run with."""
    import json
    from dataclasses import asdict

    saved = trpo_dir / "config.json"
    if not (saved.exists() and (trpo_dir / STATE_FILE).exists()):
        return
    record = json.loads(saved.read_text())
    began_from = Path(record.get("init") or "").name  # (by name: the folder may have moved)
    if began_from and began_from != init.name:
        raise ConfigError(f"{trpo_dir}: its TRPO run began from {began_from}; this recipe's starts from {init.name}, "
                          "the round DAgger keeps. Move that folder aside to run TRPO again from it")
    free = ("samples", "sim_threads", "torch_threads", "checkpoint_every")
    wanted = json.loads(json.dumps(asdict(config)))
    # a setting the record lacks ran at its default then (it was added since)
    began = {**json.loads(json.dumps(asdict(TRPOConfig()))), **record.get("trpo", {})}
    differ = sorted(k for k in wanted if k not in free and began[k] != wanted[k])
    if differ:
        found = ", ".join(f"{k}={began[k]!r}" for k in differ)
        expected = ", ".join(f"{k}={wanted[k]!r}" for k in differ)
        raise ConfigError(f"{trpo_dir}: its TRPO run was begun with {found}; this recipe's is {expected}. "
                          "Move that folder aside to run TRPO again with today's settings")


def confirmation_key(config: PipelineConfig, result: RoundResult, run_dir: Path) -> dict:
    """What a kept confirmation of round result must match to be reused: the checkpoint's bytes
    (a run begun again in the folder writes other ones) and the evaluation's settings."""
    import hashlib

    digest = hashlib.sha256((Path(run_dir) / result.checkpoint).read_bytes()).hexdigest()[:16]
    return {"checkpoint": result.checkpoint, "sha256": digest, "episodes": config.eval_episodes,
            "horizon_s": result.evaluation["horizon_s"], "init_noise_rad": config.eval_init_noise_rad}


def confirm_round(config: PipelineConfig, result: RoundResult, env_config: EnvConfig, run_dir: Path,
                  on_progress: Callable[[str], None] | None = None) -> EvalResult:
    """A round's policy, whole enough in its own evaluation, evaluated again before stopping
    there: config.eval_episodes episodes from phase 0 with other starting noise than its own
    evaluation's (seed 1), over its evaluation's horizon; kept in run_dir/CONFIRMATIONS, so a
    resumed run does not repeat it."""
    import json

    from .atomic import write_text

    path = run_dir / CONFIRMATIONS
    kept = json.loads(path.read_text()) if path.exists() else {}
    key = confirmation_key(config, result, run_dir)
    entry = kept.get(str(result.round))
    if entry is not None and entry["key"] == key:
        return EvalResult.from_dict(entry["evaluation"])
    if on_progress:
        on_progress(f"round {result.round}: whole enough in its evaluation; confirming with {config.eval_episodes} "
                    "more episodes")
    policy = load_checkpoint(run_dir / result.checkpoint, env_config)[0]
    check = evaluate(policy_controller(policy), replace(env_config, random_start=False), episodes=config.eval_episodes,
                     horizon_s=result.evaluation["horizon_s"], init_noise_rad=config.eval_init_noise_rad, seed=1)
    if on_progress:
        on_progress(f"round {result.round}: {check.full_horizon} of {check.episodes} confirmation episodes whole")
    kept[str(result.round)] = {"key": key, "evaluation": check.to_dict()}
    write_text(path, json.dumps(kept, indent=2))
    return check


def check_expert(config: PipelineConfig, expert, env_config: EnvConfig, run_dir: Path,
                 on_progress: Callable[[str], None] | None = None) -> EvalResult:
    """The expert alone from phase 0, one episode of config.expert_check_s, else of the
    evaluation horizon (kept in run_dir/EXPERT_CHECK under config.expert's name, beside other
    experts' checks, so a resumed run or learn's next rung does not repeat it); ExpertFalls if it
    falls.  on_progress: a note at each quarter of the episode (a search expert
    takes minutes)."""
    import json

    from .experts import provenance_json

    path = run_dir / EXPERT_CHECK
    horizon_s = config.expert_check_s or config.eval_horizon_s
    if horizon_s is not None:  # (None: evaluate's own default, the clip's length or 20 s)
        horizon_s = load_clip(env_config.clip).episode_horizon_s(horizon_s)
    key = {"expert": json.loads(provenance_json(expert)), "horizon_s": horizon_s,
           "init_noise_rad": config.eval_init_noise_rad}  # another expert or horizon: check again
    kept = _kept_checks(path)
    mine = next((c for c in (kept.get(config.expert), kept.get("")) if c and c["key"] == key), None)
    if mine is not None:
        check = EvalResult.from_dict(mine["evaluation"])
    else:
        from .atomic import write_text

        def progress(done, total):
            if on_progress and done * 4 // total != (done - 1) * 4 // total:
                on_progress(f"the expert alone: {done}/{total} control steps")

        check = evaluate(expert_controller(expert), replace(env_config, random_start=False), episodes=1,
                         horizon_s=horizon_s, init_noise_rad=config.eval_init_noise_rad,
                         progress=progress)
        run_dir.mkdir(parents=True, exist_ok=True)
        kept[config.expert] = {"key": key, "evaluation": check.to_dict()}
        write_text(path, json.dumps(kept, indent=2))
    if check.full_horizon < check.episodes:
        end = check.endings[0]
        cause = end["cause"]
        reconstructed_s = getattr(expert, "reconstructed_s", None)  # the guided expert's trajectory
        if reconstructed_s is not None and reconstructed_s < check.horizon_s - 1e-9:
            cause += f"; its trajectory, reconstructed offline, gave up at {reconstructed_s:.2f} s"
        # the guided expert performs clips the search cannot (run, roll, punch, the getups), at
        # several times its cost a label: the one other expert worth a try
        other = "; --expert guided searches around a trajectory reconstructed offline, which performs more clips" \
            if config.expert == "search" else ""
        raise ExpertFalls(env_config.clip, config.expert, end["time_s"], check.horizon_s, end["phase"], cause,
                          path, other)
    return check


def _kept_checks(path: Path) -> dict:
    """path's (EXPERT_CHECK) checks by expert name; a folder from before learn's ladder kept one
    check of an unnamed expert, under ""."""
    import json

    kept = json.loads(path.read_text()) if path.exists() else {}
    return {"": kept} if "key" in kept else kept


def _checked_before(path: Path, expert: str) -> bool:
    """Whether path holds a check check_expert may read back for the expert called expert."""
    kept = _kept_checks(path)
    return expert in kept or "" in kept


def _preparation_notes(clip: str, on_progress: Callable[[str], None] | None, every_s: float = 60.0,
                       clock: Callable[[], float] = time.monotonic):
    """progress(done, total, what) of the tracking expert's preparation (the guided expert's
    trajectory, minutes on first use) as on_progress notes: one when each part first gets a tenth
    further, one when it ends, and one every every_s [s] between (a reconstruction that rewinds
    for many minutes without getting further still says where it is)."""
    if on_progress is None:
        return None
    furthest: dict[str, int] = {}  # part -> the most tenths done
    last = [clock()]  # time of the last note

    def progress(done: int, total: int, what: str) -> None:
        tenth, now = done * 10 // total, clock()
        if done == total or tenth > furthest.get(what, 0) or now - last[0] >= every_s:
            furthest[what] = max(tenth, furthest.get(what, 0))
            last[0] = now
            on_progress(f"{what} {clip} for the guided expert (once; then cached): {done}/{total}")
    return progress


def whole_enough(result: RoundResult, share: float) -> bool:
    """A DAgger round (not round 0) whose evaluation kept at least `share` of its episodes up for
    the whole horizon (a policy that walks 8 of 10 keeps all of 5 up a third of the time)."""
    ev = result.evaluation
    return result.round >= 1 and ev["full_horizon"] >= share * ev["episodes"] - 1e-9


def _check_labeller(path: Path, expert) -> None:
    """Refuse a store whose mocap round another expert labelled (a run folder of another recipe:
    the pd one's, or the guided one's for the search's): its rounds and the recipe's would mix two
    experts' labels.  Settings aside: a recipe whose search settings changed resumes."""
    import json

    from .experts import expert_name, provenance_json

    store = DemoStore(path)
    wanted = expert_name(json.loads(provenance_json(expert)))
    had = set()
    for checkpoint_id, eid in {e["checkpoint_id"]: e["id"] for e in store.episode_index()
                               if e["source"] == "mocap" and e["checkpoint_id"].startswith("expert:")}.items():
        labelled_by = store.episode_attrs(eid).get("labelled_by")
        # (a store from before episodes kept their labeller: the kind in checkpoint_id, expert:KIND:HASH)
        had.add(expert_name(json.loads(labelled_by)) if labelled_by else checkpoint_id.split(":")[1])
    if had and had != {wanted}:
        raise ConfigError(f"{path}: its mocap round was labelled by the {', '.join(sorted(had))} expert, not the "
                          f"{wanted} expert this recipe labels with; use another run folder")


def _check_store(path: Path, env_config: EnvConfig) -> None:
    """Refuse a store of another env: its policies could not be trained on or evaluated here."""
    had, wanted = DemoStore(path).env_config.policy_key(), env_config.policy_key()
    if had != wanted:
        diff = ", ".join(f"{k}: store {had[k]!r}, requested {wanted[k]!r}" for k in had if had[k] != wanted[k])
        raise ConfigError(f"{path}: built for another env configuration ({diff}); use another run folder")
