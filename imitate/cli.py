"""The ``imitate`` command: the only module that parses arguments or prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import ConfigError, ImitateError


def _search_config(args, name: str = "search"):
    """The SearchConfig of the search or guided expert: --search-preset (default: plain for
    search, GUIDED_LABELS for guided), then the --search-* options given, and --seed."""
    from .experts.search import GUIDED_LABELS, PRESETS, SearchConfig
    from .options import config_from

    preset = PRESETS[args.search_preset] if args.search_preset else (
        GUIDED_LABELS if name == "guided" else PRESETS["plain"])
    return config_from(args, SearchConfig, preset=preset, seed=args.seed)


def _make_expert(name: str, clip, config, args):
    """The expert called name (imitate.experts.EXPERTS) for an env config, with the search
    options in args (and --ray, --ray-workers where the command has them): _expert's."""
    from .experts import RECOMMENDED

    name = RECOMMENDED if name == "best" else name
    search = _search_config(args, name) if name in ("search", "guided") else None
    return _expert(name, clip, config, search, getattr(args, "ray", None), getattr(args, "ray_workers", None))


def _expert(name: str, clip, config, search, ray: str | None, ray_workers: int | None,
            tracking_config=None):
    """The expert called name ("best" already resolved) for an env config, with the search's
    SearchConfig and the tracking expert's TrackingConfig (default if None); with ray (an address,
    "local" for a local instance) the search's labels on Ray workers.  The tracking expert's first
    preparation for a clip (tracking, guided) shows a progress bar, or runs on a Ray worker with ray."""
    from .experts import make_expert

    on_ray = ray is not None
    if on_ray and name == "pd":
        raise ConfigError("--ray spreads the search expert's labels and the tracking expert's preparation; the pd "
                          "expert needs no workers (it labels in microseconds)")
    if name == "pd" or (name == "search" and not on_ray):
        return make_expert(name, clip, config, search=search)
    if name == "search":
        from .distributed import RayExpert

        return RayExpert(clip, config, search, workers=ray_workers, address=ray)
    if on_ray:  # prepared on a worker (cached here)
        from .console import progress_console
        from .distributed import prepare_on_ray

        tracking = prepare_on_ray(clip, config, tracking_config, address=ray, cpus=ray_workers,
                                  say=lambda line: progress_console.print(line, highlight=False))
    else:
        from .console import progress_bar

        with progress_bar() as bar:
            tasks = {}

            def progress(done, total, what):
                if what not in tasks:
                    tasks[what] = bar.add_task(f"{what} {clip.name} for the tracking expert (once; then cached)",
                                               total=total)
                bar.update(tasks[what], completed=done)

            tracking = make_expert("tracking", clip, config, tracking=tracking_config, progress=progress)
    horizon_s = tracking.info["horizon_steps"] * config.control_dt
    if tracking.reached_s < horizon_s - 1e-9:
        from .console import progress_console

        if name == "tracking":
            past = "the PD expert's"
        elif clip.loop:  # search.periodic_targets: the phase means go on past the trajectory
            past = "the search's around the reference's targets plus the trajectory's mean offsets at each phase"
        else:
            past = "the search's around the reference"
        progress_console.print(f"[yellow]the tracking expert's reconstruction performs '{clip.name}' for "
                               f"{tracking.reached_s:.2f} of {horizon_s:.2f} s (it gave up there); past that the "
                               f"{name} expert's labels are {past}[/]")
    if name == "tracking":
        return tracking
    from .experts.search import SearchExpert, guided_expert

    make = SearchExpert
    if on_ray:  # guided: the search's labels on the workers, around the trajectory
        from functools import partial

        from .distributed import RayExpert

        make = partial(RayExpert, workers=ray_workers, address=ray)
    return guided_expert(clip, config, search, tracking, make)


def _new_env_config(clip: str, action_space: str, args):
    """The EnvConfig of a new run on clip; --fall-bodies if given, else EnvConfig's default rule."""
    from .config import EnvConfig

    rule = {"fall_bodies": args.fall_bodies} if args.fall_bodies else {}
    return EnvConfig(clip=clip, action_space=action_space, **rule)


def _add_fall_option(p, default_help: str = "clip") -> None:
    from .config import FALL_RULES

    rules = "; ".join(f"{k}: {v}" for k, v in FALL_RULES.items())
    p.add_argument("--fall-bodies", default=None, choices=list(FALL_RULES),
                   help=f"which bodies' floor contact ends an episode (default: {default_help}): {rules}")


# the search's settings a command line may change (SearchConfig field -> flag; "!": a negation)
SEARCH_FLAGS = {"candidates": "--candidates", "horizon": "--horizon", "noise_rad": "--search-noise",
                "label": "--search-label", "temperature": "--search-temperature", "knots": "--search-knots",
                "noise_decay": "--search-noise-decay", "planning_hz": "--planning-hz", "warm_start": "!--search-cold",
                "cold_iterations": "--search-cold-iterations", "antithetic": "--search-antithetic"}


def _add_ray_options(p, prefix: str) -> None:
    """--ray [ADDRESS] and --ray-workers N: the search's labels on Ray workers."""
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help=f"{prefix}label on Ray workers (pip install 'imitate[ray]'), the same labels as without; "
                        "no ADDRESS: a local Ray instance of this machine's cores; auto: the running cluster")
    p.add_argument("--ray-workers", type=int, default=None,
                   help=f"{prefix}with --ray: how many workers (default: one per CPU of the cluster); for the "
                        "tracking expert, the CPUs its preparation's task holds (default 1)")


def _add_expert_options(p, default: str | None = "pd") -> None:
    p.add_argument("--expert", default=default, choices=["pd", "search", "tracking", "guided", "best"],
                   help="pd: PD servos on the reference (cannot balance); search: PD servos plus a short-horizon "
                        "search at every label (slow, balances on walk); tracking: linear feedback around a "
                        "trajectory reconstructed offline once per clip (fast labels; cached in $IMITATE_CACHE or "
                        "~/.cache/imitate); guided: the search around that trajectory's targets (slow labels; "
                        "performs run and roll, which neither does alone); best: the recommended expert (today: "
                        "tracking)")
    from .experts.search import PRESETS, SearchConfig
    from .options import add_options

    p.add_argument("--search-preset", default=None, choices=list(PRESETS),
                   help="search: the settings the options below start from: plain (SearchConfig's defaults: a "
                        "warm-started best-of-K search), dagger (DAGGER_LABELS: cold, MPPI at temperature 0.3, 4 "
                        "knots: labels a learner can fit), learn (imitate learn's: dagger planning at 150 Hz); "
                        "default: plain for --expert search, dagger (at the env's physics rate) for guided")
    add_options(p, SearchConfig, SEARCH_FLAGS, presets=PRESETS)
    _add_ray_options(p, "search: ")


def _cmd_motions(args) -> int:
    from .motion import list_clips, load_clip

    rows = []
    for info in list_clips():
        clip = load_clip(info.path)
        rows.append({**clip.info, "name": info.name, "source": info.source, "path": str(info.path)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from .console import clips_table, console

        console.print(clips_table(rows))
        if not any(r["source"] == "pybullet" for r in rows):
            console.print("[yellow]The 15 classic clips come with pybullet: pip install 'imitate\\[clips]'[/]")
    return 0


def _track(clip: str, action_spaces: list[str], seconds: float | None):
    from .config import EnvConfig
    from .evaluation import evaluate, expert_controller
    from .experts.pd import PDExpert
    from .motion import load_clip

    motion = load_clip(clip)
    results = {}
    for space in action_spaces:
        expert = PDExpert(motion, space)
        results[f"PD servos ({space})"] = evaluate(expert_controller(expert), EnvConfig(clip=clip, action_space=space),
                                                   episodes=1, horizon_s=seconds)
    return motion, results


def _cmd_track(args) -> int:
    spaces = ["pd_target", "torque"] if args.action_space == "both" else [args.action_space]
    motion, results = _track(args.clip, spaces, args.seconds)
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in results.items()}, indent=2))
        return 0
    from .console import console, evaluation_table

    console.print(evaluation_table(results, f"PD servos tracking '{motion.name}' from phase 0"))
    return 0


# the policy's settings a command line may change (PolicyConfig field -> flag)
POLICY_FLAGS = {"hidden": "--hidden", "linear_skip": "--linear-skip", "members": "--ensemble", "residual": "--residual"}


def _cmd_sft(args) -> int:
    from .console import console, progress_bar, sft_table
    from .options import config_from, given
    from .policy import PolicyConfig, save_checkpoint
    from .sft import SFTConfig, sft_on_store
    from .store import DemoStore

    _at_least(*((flag, given(args, SFTConfig, name), 1) for flag, name in
                (("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--patience", "patience"))))
    _positive(("--lr", given(args, SFTConfig, "lr")))
    if Path(args.out).exists() and not args.overwrite:  # before the training, not after
        raise ConfigError(f"{args.out}: already exists (pass --overwrite to replace it)")
    store = DemoStore(args.data)
    config = config_from(args, SFTConfig, seed=args.seed)
    with progress_bar() as bar:
        task = bar.add_task("SFT epochs", total=config.epochs)
        def progress(epoch, epochs, train_loss, valid_loss):
            bar.update(task, completed=epoch, description=f"SFT  train {train_loss:.5f}  valid {valid_loss:.5f}")

        policy_config = config_from(args, PolicyConfig)
        policy, result = sft_on_store(store, config, policy_config=policy_config, progress=progress)
    from dataclasses import asdict

    save_checkpoint(args.out, policy, store.env_config, store=str(store.path),
                    store_rounds=json.loads(store.attrs()["rounds"]), sft=asdict(result) | {"history": []},
                    sft_config=asdict(config))
    console.print(sft_table(result, f"SFT on {args.data}"))
    console.print(f"wrote {args.out}")
    return 0


def _at_least(*checks: tuple[str, float, float]) -> None:
    """ConfigError naming the first flag whose value is below its minimum: (flag, value, minimum)."""
    for flag, value, minimum in checks:
        if not value >= minimum:
            raise ConfigError(f"{flag} must be >= {minimum}; found {value}")


def _positive(*checks: tuple[str, float]) -> None:
    """ConfigError naming the first flag whose value is not > 0: (flag, value)."""
    for flag, value in checks:
        if not value > 0:
            raise ConfigError(f"{flag} must be > 0; found {value}")


def _dagger_config(args):
    """The DAggerConfig of `imitate dagger`'s options (the rest: DAggerConfig's defaults)."""
    from .dagger import DAggerConfig
    from .options import config_from
    from .policy import PolicyConfig
    from .sft import SFTConfig

    defaults = DAggerConfig()
    return config_from(args, DAggerConfig, policy=config_from(args, PolicyConfig), seed=args.seed,
                       sft=config_from(args, SFTConfig, group="sft", preset=defaults.sft, seed=args.seed),
                       retrain=config_from(args, SFTConfig, group="retrain", preset=defaults.retrain, seed=args.seed))


def _cmd_dagger(args) -> int:
    from .console import LiveTable, console, rounds_table
    from .dagger import DAggerConfig, best_round, check_plan_labels, finished_rounds, run_dagger, schedule
    from .motion import load_clip
    from .options import given
    from .policy import load_checkpoint
    from .store import DemoStore

    _at_least(*((flag, given(args, DAggerConfig, name), least) for flag, name, least in
                (("--rounds", "rounds", 1), ("--num-envs", "num_envs", 1), ("--steps", "steps_per_env", 1),
                 ("--segment-steps", "segment_steps", 1), ("--eval-episodes", "eval_episodes", 1),
                 ("--collect-noise", "collect_noise", 0), ("--plan-labels", "plan_labels", 0), ("--fits", "fits", 1))))
    try:
        schedule(given(args, DAggerConfig, "beta"))
    except ConfigError as exc:
        raise ConfigError(f"--beta: {exc}") from None
    store = DemoStore(args.data)
    if args.clip and load_clip(args.clip).name != load_clip(store.env_config.clip).name:
        raise ConfigError(f"--clip {args.clip} differs from the store's clip {store.env_config.clip}")
    if args.init:
        load_checkpoint(args.init, store.env_config)  # a bad --init: refused before anything is made
    expert = _make_expert(args.expert, load_clip(store.env_config.clip), store.env_config, args)
    config = _dagger_config(args)
    check_plan_labels(config, expert)  # before the live table starts
    with LiveTable(rounds_table, finished_rounds(args.out)) as table:
        results = run_dagger(args.out, args.data, config, init_checkpoint=args.init, expert=expert,
                             on_round=table.add, on_progress=console.log)
    best = best_round(results)
    console.print(f"checkpoints and state in {args.out}; last policy: {Path(args.out) / results[-1].checkpoint}; "
                  f"best: {Path(args.out) / best.checkpoint} (round {best.round}, normalised return "
                  f"{best.evaluation['normalised_return']['mean']:.3f} in its evaluation)")
    return 0


def _evaluate(args):
    """(name, EvalResult, controller, env config) of the checkpoint or the expert."""
    from dataclasses import replace

    from .evaluation import evaluate, expert_controller, policy_controller
    from .motion import load_clip
    from .policy import load_checkpoint

    _at_least(("--episodes", args.episodes, 1), ("--init-noise", args.init_noise, 0),
              ("--action-noise", args.action_noise, 0), ("--push-force", args.push_force, 0))
    if args.seconds is not None and not args.seconds > 0:
        raise ConfigError(f"--seconds must be > 0; found {args.seconds}")
    if args.expert:
        config = _new_env_config(args.clip or "walk", args.action_space or "pd_target", args)
        expert = _make_expert(args.expert, load_clip(config.clip), config, args)
        controller = expert_controller(expert)
        from .experts import RECOMMENDED

        kind = f"best: {RECOMMENDED}" if args.expert == "best" else args.expert
        name = f"{kind} expert ({config.action_space})"
    else:
        if not args.checkpoint:
            raise ConfigError("give a checkpoint to evaluate, or --expert pd|search|tracking|best")
        policy, trained_for, _ = load_checkpoint(args.checkpoint)
        if args.action_space not in (None, trained_for.action_space):
            raise ConfigError(f"{args.checkpoint} drives {trained_for.action_space} actions; --action-space "
                              f"{args.action_space} cannot be evaluated with it (leave the option out)")
        config = trained_for if args.clip is None else replace(trained_for, clip=args.clip)
        load_checkpoint(args.checkpoint, config)  # refuses another clip or action space clearly
        if args.fall_bodies:
            config = replace(config, fall_bodies=args.fall_bodies)
        controller = policy_controller(policy)
        name = str(args.checkpoint)
    from .console import progress_bar

    clip = load_clip(config.clip)
    if args.seconds is not None and not clip.loop and args.seconds > clip.duration_s + 1e-9:
        raise ConfigError(f"--seconds {args.seconds:g} is past the end of {clip.name} ({clip.duration_s:.2f} s; "
                          "it does not loop): leave --seconds out for the whole clip")
    with progress_bar() as bar:  # on stderr: --json output stays clean
        task = bar.add_task(f"evaluating {name} on {config.clip}", total=None)
        result = evaluate(controller, config, episodes=args.episodes, horizon_s=args.seconds,
                          init_noise_rad=args.init_noise, seed=args.seed, action_noise=args.action_noise,
                          push_force_n=args.push_force, push_every_s=args.push_every,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    return name, result, controller, config


def _cmd_evaluate(args) -> int:
    name, result, controller, config = _evaluate(args)
    if args.video:
        from .render import render_video

        render_video(controller, config, args.video, seconds=min(result.horizon_s, args.video_seconds))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    from .console import console, evaluation_table

    console.print(evaluation_table({name: result}, f"Evaluation on '{config.clip}' from phase 0"))
    if args.video:
        console.print(f"wrote {args.video} and {Path(args.video).with_suffix('.png')} (a strip of frames)")
    return 0


def _learning_curve(run_dir: Path) -> None:
    """run_dir/learning_curve.png from TRPO's log.csv."""
    from .plots import learning_curve_png
    from .trpo import logged_iterations

    rows = logged_iterations(run_dir)
    if rows:
        learning_curve_png(run_dir / "learning_curve.png", [r.samples for r in rows],
                           {"mean per-step reward": [r.mean_step_reward for r in rows],
                            "episode length / 20 s": [r.mean_episode_length_s / 20.0 for r in rows]},
                           xlabel="env samples", title=f"TRPO: {run_dir.name}")


def _cmd_trpo(args) -> int:
    from dataclasses import replace

    from .config import EnvConfig
    from .console import LiveTable, console, trpo_table
    from .options import config_from, given
    from .policy import load_checkpoint
    from .trpo import TRPOConfig, start

    _at_least(*((flag, given(args, TRPOConfig, name), least) for flag, name, least in
                (("--samples", "samples", 1), ("--num-envs", "num_envs", 1), ("--steps", "steps_per_env", 1),
                 ("--checkpoint-every", "checkpoint_every", 1), ("--sim-threads", "sim_threads", 0))))
    _positive(("--max-kl", given(args, TRPOConfig, "max_kl")))
    if args.init:
        _, trained_for, _ = load_checkpoint(args.init)
        if args.action_space not in (None, trained_for.action_space):
            raise ConfigError(f"{args.init} drives {trained_for.action_space} actions; --action-space "
                              f"{args.action_space} applies only from scratch (leave it out with --init)")
        env_config = trained_for if args.clip is None else EnvConfig(**{**json.loads(trained_for.to_json()),
                                                                      "clip": args.clip})
        if args.fall_bodies:
            env_config = replace(env_config, fall_bodies=args.fall_bodies)
    else:
        env_config = _new_env_config(args.clip or "walk", args.action_space or "pd_target", args)
    config = config_from(args, TRPOConfig, seed=args.seed)
    trainer = start(args.out, env_config, config, args.init, on_progress=console.print)
    with LiveTable(trpo_table, last=15) as table:
        trainer.run(table.add)
    _learning_curve(Path(args.out))
    console.print(f"policy: {Path(args.out) / 'policy.pt'} (evaluate it with `imitate evaluate`); "
                  f"log: {Path(args.out) / 'log.csv'}")
    return 0


class _PipelineView:
    """Shows run_pipeline's stages as `imitate pipeline` prints them: headings, the store's
    rounds, live tables of the DAgger rounds and the TRPO iterations."""

    def __init__(self, config):
        self.config = config
        self.stage = None  # the running Stage
        self.table = None  # its LiveTable, if any

    def on_stage(self, stage) -> None:
        from .console import LiveTable, console, rounds_table, store_tables, trpo_table
        from .dagger import finished_rounds
        from .store import DemoStore
        from .store_stats import summarize

        self.end_table()
        self.stage = stage
        if stage.name == "expert":
            console.rule(f"[bold]imitate pipeline: {stage.clip} ({self.config.action_space}) in {stage.run_dir}")
            console.print(f"0. the {stage.expert} expert alone from phase 0 (DAgger cannot outlive it)"
                          + (": checked before" if stage.resumed else ""))
        elif stage.name == "store":
            if not self.config.expert_first:  # else the expert stage printed it
                console.rule(f"[bold]imitate pipeline: {stage.clip} ({self.config.action_space}) in {stage.run_dir}")
            console.print(f"resuming: {stage.path} exists" if stage.resumed else
                          f"1. building the mocap store (reference and perturbed states, {stage.expert}-expert "
                          "labels)")
        elif stage.name == "dagger":
            for table in store_tables(summarize(DemoStore(stage.path)))[1:2]:
                console.print(table)
            console.print(f"2-3. SFT on the store, then DAgger rounds (the learner drives, the {stage.expert} "
                          "expert relabels)")
            self.table = LiveTable(rounds_table, finished_rounds(stage.run_dir)).start()
        elif stage.name == "trpo":
            from .trpo import logged_iterations

            console.print(f"4. TRPO fine-tuning from the DAgger policy kept ({self.config.trpo.samples:,} samples)")
            # a resumed run shows the iterations it logged before, not an empty table
            self.table = LiveTable(trpo_table, logged_iterations(stage.path), last=15).start()
        else:
            console.print("5. evaluation from phase 0, 20 s horizon")

    def add_row(self, row) -> None:
        self.table.add(row)

    def note(self, message: str) -> None:
        from .console import console

        (console.log if self.stage.name == "dagger" else console.print)(message)

    def end_table(self, finished: bool = True) -> None:
        """Stop the running stage's table (after TRPO, draw its learning curve if it finished)."""
        if self.table is None:
            return
        self.table.stop(finished)
        self.table = None
        if finished and self.stage.name == "trpo":
            _learning_curve(self.stage.path)


def _cmd_pipeline(args) -> int:
    """The main job on a small default: the search recipe's learn on a small budget (walk walks),
    or with --expert pd the teaching example (store, SFT, DAgger, TRPO, evaluation: its policies
    fall)."""
    from dataclasses import replace

    from .console import console, evaluation_table
    from .motion import load_clip
    from .pipeline import FINE_TUNING, RECIPES, run_pipeline

    recipe = RECIPES["main" if args.expert == "search" else args.expert]
    rounds = recipe.dagger.rounds if args.rounds is None else args.rounds
    episodes = recipe.eval_episodes if args.episodes is None else args.episodes
    samples = (recipe.trpo.samples if recipe.trpo else 0) if args.trpo_samples is None else args.trpo_samples
    _at_least(("--rounds", rounds, 1), ("--episodes", episodes, 1), ("--trpo-samples", samples, 0))
    config = replace(recipe, clip=args.clip, action_space=args.action_space,
                     dagger=replace(recipe.dagger, rounds=rounds), eval_episodes=episodes,
                     trpo=replace(recipe.trpo or FINE_TUNING, samples=samples) if samples > 0 else None)
    name = load_clip(args.clip).name
    if args.expert == "search":
        out = args.out or f"runs/pipeline-{name}"
        return _learn_and_show(args.clip, out, config, rounds, episodes, samples, args.video_seconds)
    view = _PipelineView(config)
    try:  # the teaching example's own folder: its PD-labelled rounds never mix with the search's
        result = run_pipeline(config, args.out or f"runs/pipeline-pd-{name}", on_stage=view.on_stage,
                              on_round=view.add_row, on_iteration=view.add_row, on_progress=view.note)
    finally:
        view.end_table(finished=False)  # a stage that raised
    console.print(evaluation_table(result.evaluation, f"'{result.clip}' from phase 0 ({episodes} episodes)"))
    if args.video_seconds > 0:
        _pipeline_video(result, args.video_seconds)
    console.print("The PD expert tracks joints but cannot balance the unactuated root, so neither can a policy "
                  "that imitates it: balance must come from TRPO (a short stage here; see the README for the "
                  "full budget) or from the search expert (imitate pipeline, its default).")
    return 0


def _learn_recipe(args):
    """learn's and zoo's recipe from --expert, --rounds, --episodes and --no-expert-check; and its most rounds."""
    from dataclasses import replace

    from .learning import LADDER
    from .pipeline import RECIPES

    names = LADDER if args.expert == "auto" else (args.expert,)
    if not args.expert_check:  # with no check, nothing tells the ladder's rungs apart: its first learns
        names = names[:1]
    recipes = [RECIPES[name] for name in names]
    rounds = recipes[0].dagger.rounds if args.rounds is None else args.rounds
    _at_least(("--rounds", rounds, 1), ("--episodes", args.episodes, 1), ("--trpo-samples", args.trpo_samples, 0))
    recipes = tuple(replace(r, dagger=replace(r.dagger, rounds=rounds), eval_episodes=args.episodes,
                            stop_when_whole=True, expert_first=r.expert_first and args.expert_check) for r in recipes)
    return (recipes if len(recipes) > 1 else recipes[0]), rounds


def _cmd_zoo(args) -> int:
    """imitate zoo: learn over many clips, one table (imitate.learning)."""
    from .console import console, zoo_table
    from .learning import CLASSIC_CLIPS, zoo

    config, _ = _learn_recipe(args)
    _at_least(("--cpus-per-clip", args.cpus_per_clip, 1))
    clips = args.clips or list(CLASSIC_CLIPS)

    def on_clip(name, i, n):
        console.rule(f"[bold]imitate zoo: {name} ({i + 1} of {n} to learn) into {args.out}/{name}")

    def on_row(row):
        console.log(f"{row.clip}: " + (f"not learned: {row.error}" if row.error else
                                       f"{row.expert} expert, return {row.normalised_return:.3f}, {row.whole} of "
                                       f"{row.episodes} whole, "
                                       f"{row.minutes:.1f} min"))

    def on_stage(stage):
        console.log(f"{stage.clip}: {stage.name}" + (f", the {stage.expert} expert" if stage.name == "expert" else "")
                    + (" (resuming)" if stage.resumed else ""))

    def on_round(r):  # a line per DAgger round: a clip takes up to half an hour
        ev = r.evaluation
        console.log(f"round {r.round}: {r.total_steps:,} steps in the store, survival "
                    f"{ev['survival_s']['mean']:.2f} s, {ev['full_horizon']} of {ev['episodes']} whole, return "
                    f"{ev['normalised_return']['mean']:.3f}")

    rows = zoo(clips, args.out, config=config, trpo_samples=args.trpo_samples, video_seconds=args.video_seconds,
               address=args.ray, cpus_per_clip=args.cpus_per_clip, on_clip=on_clip, on_row=on_row,
               learn_kwargs={"on_stage": on_stage, "on_round": on_round, "on_progress": console.log})
    console.print(zoo_table(rows, f"imitate zoo: {len(rows)} clips, the final policy from phase 0 "
                                  f"({args.episodes} episodes)"))
    console.print(f"Wrote {args.out}/zoo.md and {args.out}/zoo.csv; each clip's policy.pt and summary.json are in "
                  f"{args.out}/CLIP")
    return 0


def _cmd_learn(args) -> int:
    """imitate learn: the recipe end to end (imitate.learning), with the pipeline's live view."""
    config, rounds = _learn_recipe(args)
    return _learn_and_show(args.clip, args.out, config, rounds, args.episodes, args.trpo_samples,
                           args.video_seconds, args.ray, args.ray_workers)


def _learn_and_show(clip: str, out, config, rounds: int, episodes: int, trpo_samples: int, video_seconds: float,
                    ray: str | None = None, ray_workers: int | None = None) -> int:
    """imitate.learn(clip, out) of the recipe config with the pipeline's live view, an estimate of
    the time left after each round, and the final table (imitate learn, imitate pipeline)."""
    from .console import console, evaluation_table
    from .learning import ladder_of, learn

    rungs = ladder_of(clip, config, trpo_samples)
    view = _PipelineView(rungs[0])  # what learn runs: its TRPO stage too
    started, done = time.perf_counter(), []

    def on_round(result):  # the live row, and how long the rest may take
        view.add_row(result)
        done.append(time.perf_counter())
        if result.round >= 1 and result.round < rounds and len(done) >= 2:
            per_round = (done[-1] - done[0]) / (len(done) - 1)
            view.note(f"round {result.round} of at most {rounds}: about {per_round * (rounds - result.round) / 60:.0f} "
                      f"min left at most (DAgger stops at the first round that keeps every episode up, confirmed)")

    if ray is not None and any(r.expert == "pd" for r in rungs):
        raise ConfigError("--ray spreads the search's labels; the pd expert needs no workers")

    def factory_of(recipe):  # the recipe's expert: a progress bar while prepared, labels on Ray workers
        return lambda clip, env_config: _expert(recipe.expert, clip, env_config, recipe.search, ray, ray_workers,
                                                recipe.tracking)

    factories = {r.expert: factory_of(r) for r in rungs if ray is not None or r.expert == "guided"}
    try:
        result = learn(clip, out, config=config, trpo_samples=trpo_samples, video_seconds=video_seconds,
                       on_stage=view.on_stage, on_round=on_round, on_iteration=view.add_row, on_progress=view.note,
                       expert_factory=factories)
    finally:
        view.end_table(finished=False)
    summary = result.summary
    console.print(evaluation_table(result.pipeline.evaluation,
                                   f"'{summary['clip']}' from phase 0 ({episodes} episodes)"))
    out = result.policy.parent
    video = " and best.mp4" if (out / "best.mp4").exists() else ""
    console.print(f"{summary['stopped']} after round {summary['rounds'][-1]['round']}; {summary['labels']['total']} "
                  f"labels, {summary['env_samples']['total']} env samples, {(time.perf_counter() - started) / 60:.1f} "
                  f"min this call. Wrote {out}/policy.pt ({summary['final']}), summary.json, learning_curve.png"
                  f"{video}")
    return 0


def _pipeline_video(result, seconds: float) -> None:
    """RUN_DIR/best.mp4 (and best.png, a strip of its frames) of the best DAgger round, or one
    line saying why there is none."""
    from .console import console
    from .evaluation import policy_controller
    from .policy import load_checkpoint
    from .render import render_video

    policy, env_config, _ = load_checkpoint(result.best)
    path = result.run_dir / "best.mp4"
    try:
        render_video(policy_controller(policy), env_config, path, seconds=seconds)
    except ConfigError as exc:  # no offscreen OpenGL or no imageio here
        console.print(f"no video: {exc}")
        return
    console.print(f"wrote {path} and {path.with_suffix('.png')}: {result.best.name} beside its reference")


def _cmd_dataset_build(args) -> int:
    from .console import console, progress_bar, store_tables
    from .dataset import BuildConfig, build_mocap_store
    from .motion import clip_name, load_clip, resolve_clip
    from .options import config_from, given
    from .store import DemoStore
    from .store_stats import summarize

    _at_least(*((flag, given(args, BuildConfig, name), least) for flag, name, least in
                (("--offsets", "offsets", 1), ("--copies", "copies", 0), ("--valid-every", "valid_every", 2))))
    build = config_from(args, BuildConfig, seed=args.seed)
    config = _new_env_config(args.clip, args.action_space, args)
    out = args.out or f"datasets/{clip_name(resolve_clip(args.clip))}.h5"
    DemoStore.check_target(out, args.overwrite)  # before the expert's preparation and the labelling
    expert = _make_expert(args.expert, load_clip(args.clip), config, args)
    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"labelling {args.clip} states ({args.expert} expert)", total=build.num_episodes)
        store = build_mocap_store(out, config, build, overwrite=args.overwrite, expert=expert,
                                  progress=lambda done, total: bar.update(task, completed=done))
    seconds = time.perf_counter() - started
    for table in store_tables(summarize(store))[:2]:
        console.print(table)
    labels = sum(e["length"] for e in store.episode_index())
    console.print(f"wrote {out}: {labels} states labelled in {seconds:.1f} s ({labels / seconds:.1f} labels/s)")
    return 0


def _cmd_dataset_stats(args) -> int:
    from .store import DemoStore
    from .store_stats import summarize

    summary = summarize(DemoStore(args.path))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from .console import console, store_tables

    for table in store_tables(summary):
        console.print(table)
    return 0


def _cmd_dataset_validate(args) -> int:
    from .store import DemoStore
    from .store_stats import validate

    counts = validate(DemoStore(args.path))
    sums = "checksums verified" if counts["checksums"] else \
        f"no checksums: written before they were added; `imitate dataset upgrade {args.path}` adds them"
    print(f"{args.path}: valid ({counts['episodes']} episodes, {counts['steps']} steps, {sums})")
    return 0


def _cmd_dataset_export(args) -> int:
    from .errors import ConfigError
    from .export import export_minari, export_robomimic
    from .store import DemoStore

    target = args.name if args.format == "minari" else args.out
    if not target:
        raise ConfigError(f"dataset export --format {args.format}: expected "
                          f"{'--name NAMESPACE/NAME-vN' if args.format == 'minari' else '--out PATH.hdf5'}, found none")
    store = DemoStore(args.path)  # before any work: a bad store is one line
    if args.format == "minari":
        dataset = export_minari(store, args.name, actions=args.actions, sources=args.sources, author=args.author)
        print(f"{args.path}: exported as the Minari dataset {args.name} ({dataset.total_episodes} episodes, "
              f"{dataset.total_steps} steps, actions: {args.actions}); minari.load_dataset({args.name!r}) reads it")
    else:
        demos = export_robomimic(store, args.out, actions=args.actions, sources=args.sources)
        print(f"{args.path}: exported in robomimic's layout to {args.out} ({demos} demos, actions: {args.actions})")
    return 0


def _cmd_dataset_upgrade(args) -> int:
    from .store import DemoStore
    from .store_stats import validate

    store = DemoStore(args.path)
    validate(store)  # never seal damaged content under fresh checksums
    if store.upgrade():
        counts = validate(DemoStore(args.path))
        print(f"{args.path}: upgraded to schema version 2 ({counts['episodes']} episodes, checksums added)")
    else:
        print(f"{args.path}: already carries checksums (schema version 2); nothing to do")
    return 0


def _cmd_dataset_copy(args) -> int:
    from .store import DemoStore
    from .store_stats import validate

    copy = DemoStore(args.src).copy(args.dst, rounds=args.rounds, sources=args.sources, runs=args.runs,
                                    overwrite=args.overwrite)
    counts = validate(copy)
    index = copy.episode_index()
    print(f"{args.dst}: {counts['episodes']} episodes, {sum(e['length'] for e in index):,} steps, rounds "
          f"{sorted({e['round'] for e in index})}, copied from {args.src} (imitate dataset stats {args.dst})")
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default at the end of its help (unless the help says it already)."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = any(action.default is x for x in (None, False, argparse.SUPPRESS))  # (0.0 == False: not "in")
        if not action.option_strings or "default" in text or unset or action.nargs == 0:
            return text
        return f"{text} (default: %(default)s)"


EXAMPLES = """examples:
  imitate pipeline                                   the main job: DAgger from the search expert until walk walks
  imitate pipeline --expert pd                       the teaching example: a PD expert's policies fall
  imitate learn crawl                                any clip (or your clip's path) to a policy, the full budget
  imitate motions                                    the clips imitate can find
  imitate dataset build walk --out runs/w/walk.h5    a store of reference states labelled by the PD expert
  imitate dagger --data runs/w/walk.h5 --out runs/w/run --rounds 3
  imitate evaluate runs/w/run/round_003.pt --episodes 5 --video runs/w/round3.mp4
  imitate evaluate --expert best --clip walk         the tracking expert alone (prepared once, then cached)
"""


def build_parser() -> argparse.ArgumentParser:
    from .dataset import BuildConfig
    from .options import add_options
    from .settings import PolicyConfig, SFTConfig
    from .store import SOURCES

    parser = argparse.ArgumentParser(prog="imitate", description="DAgger-centred imitation learning of "
                                     "physics-based character motion (MuJoCo humanoid, DeepMimic clips).",
                                     epilog=EXAMPLES, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"imitate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("motions", help="list every clip imitate can find (motions/, pybullet)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_motions)

    p = sub.add_parser("track", help="PD servos track a clip from phase 0; report survival and reward terms")
    p.add_argument("--clip", default="walk", help="clip name or path (default: walk)")
    p.add_argument("--action-space", default="both", choices=["pd_target", "torque", "both"],
                   help="which servo model to track with (both: a row each)")
    p.add_argument("--seconds", type=float, default=None, help="horizon [s] (default: 20 looping, else the clip)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_track)

    p = sub.add_parser("dataset", help="build, inspect and validate HDF5 demonstration stores")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser("build", help="build a store from a clip: reference and perturbed states, expert labels")
    b.add_argument("clip", help="clip name or path")
    b.add_argument("--out", help="store path (default: datasets/CLIP.h5)")
    b.add_argument("--action-space", default="pd_target", choices=["pd_target", "torque"],
                   help="pd_target: actions are servo targets; torque: actions are joint torques")
    add_options(b, BuildConfig, {"offsets": "--offsets", "joint_noise_rad": "--joint-noise",
                                 "velocity_noise_rad_s": "--velocity-noise", "copies": "--copies",
                                 "valid_every": "--valid-every"})
    b.add_argument("--seed", type=int, default=0, help="seed of the sampled offsets and noise")
    b.add_argument("--overwrite", action="store_true", help="replace an existing store")
    _add_fall_option(b)
    _add_expert_options(b)
    b.set_defaults(func=_cmd_dataset_build)
    st = dsub.add_parser("stats", help="rich tables of a store's metadata, rounds, fields and splits")
    st.add_argument("path", help="the store (.h5)")
    st.add_argument("--json", action="store_true", help="print JSON instead of tables")
    st.set_defaults(func=_cmd_dataset_stats)
    v = dsub.add_parser("validate", help="check schema, shapes, finiteness and statistics; non-zero exit on a problem")
    v.add_argument("path", help="the store (.h5)")
    v.set_defaults(func=_cmd_dataset_validate)
    x = dsub.add_parser("export", help="write a store as a Minari dataset or in robomimic's HDF5 layout",
                        description="Write the store's episodes as a local Minari dataset (under Minari's data "
                        "path, $MINARI_DATASETS_PATH or ~/.minari/datasets; pip install 'imitate[minari]') or as "
                        "a robomimic-layout HDF5 file. Examples: imitate dataset export datasets/walk.h5 --name "
                        "imitate/walk-mocap-v0; imitate dataset export datasets/walk.h5 --format robomimic --out "
                        "walk_robomimic.hdf5")
    x.add_argument("path", help="the store (.h5)")
    x.add_argument("--format", default="minari", choices=["minari", "robomimic"], help="the format (default: minari)")
    x.add_argument("--name", help="minari: the dataset id, NAMESPACE/NAME-vN")
    x.add_argument("--out", help="robomimic: the HDF5 file to write")
    x.add_argument("--actions", default="labels", choices=["labels", "executed"],
                   help="the episodes' actions: the expert's labels (default) or the executed ones")
    x.add_argument("--sources", nargs="+", choices=SOURCES, default=None,
                   help="export only these episode sources (default: all)")
    x.add_argument("--author", default=None, help="the dataset's author (default: the user name)")
    x.set_defaults(func=_cmd_dataset_export)
    c = dsub.add_parser("copy", help="a new store of some of a store's episodes: a store per experiment",
                        description="Copy the episodes that pass every filter given into a new store (checksummed, "
                        "written whole then renamed into place), keeping their ids, splits, rounds and labels. "
                        "Example: imitate dataset copy datasets/walk.h5 /tmp/walk-mocap.h5 --sources mocap")
    c.add_argument("src", help="the store to copy from (never changed)")
    c.add_argument("dst", help="the new store")
    c.add_argument("--rounds", type=int, nargs="+", default=None, help="keep these store rounds only")
    c.add_argument("--sources", nargs="+", default=None, choices=SOURCES,
                   help="keep these sources only")
    c.add_argument("--runs", nargs="+", default=None, metavar="RUN_ID",
                   help="keep the mocap rounds and these DAgger runs' rounds (run ids: imitate dataset stats)")
    c.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    c.set_defaults(func=_cmd_dataset_copy)
    u = dsub.add_parser("upgrade", help="add checksums to a store written by an older imitate (validated first)")
    u.add_argument("path", help="the store (.h5)")
    u.set_defaults(func=_cmd_dataset_upgrade)

    p = sub.add_parser("sft", help="behaviour cloning of the expert's labels in a store")
    p.add_argument("--data", required=True, help="the store")
    p.add_argument("--out", required=True, help="checkpoint to write (refused if it exists, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_options(p, SFTConfig, {"loss": "--loss", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
                               "patience": "--patience", "drop_before_fall_s": "--drop-before-fall"})
    add_options(p, PolicyConfig, POLICY_FLAGS)
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the minibatch order")
    p.set_defaults(func=_cmd_sft)

    p = sub.add_parser("dagger", help="DAgger rounds: run the learner, relabel with the expert, append, retrain")
    p.add_argument("--data", required=True, help="the store (its mocap round trains round 0)")
    p.add_argument("--out", required=True, help="run folder: checkpoints and state.json (resumes if present)")
    p.add_argument("--clip", default=None, help="check that the store is of this clip")
    p.add_argument("--init", default=None, help="start from this checkpoint instead of SFT on the store")
    from .settings import DAggerConfig

    defaults = DAggerConfig()
    add_options(p, DAggerConfig, {"rounds": "--rounds", "beta": "--beta", "mixing": "--mixing",
                                  "segment_steps": "--segment-steps", "num_envs": "--num-envs",
                                  "steps_per_env": "--steps", "keep_rounds": "--keep-rounds",
                                  "collect_noise": "--collect-noise", "plan_labels": "--plan-labels",
                                  "fits": "--fits", "retrain_from_scratch": "--retrain-from-scratch",
                                  "eval_episodes": "--eval-episodes", "eval_horizon_s": "--eval-seconds"})
    add_options(p, SFTConfig, {"epochs": "--sft-epochs"}, preset=defaults.sft, group="sft",
                help_prefix="round 0's SFT (and every retrain with --retrain-from-scratch): ")
    add_options(p, SFTConfig, {"epochs": "--epochs", "epoch_samples": "--epoch-samples",
                               "drop_before_fall_s": "--drop-before-fall"}, preset=defaults.retrain, group="retrain",
                help_prefix="each round's retraining: ")
    add_options(p, PolicyConfig, POLICY_FLAGS, help_prefix="round 0's policy: ")
    p.add_argument("--seed", type=int, default=0, help="seed of the collection, the training and the expert's search")
    _add_expert_options(p)
    p.set_defaults(func=_cmd_dagger)

    p = sub.add_parser("evaluate", help="normalised return, survival, joint and end-effector errors; video")
    p.add_argument("checkpoint", nargs="?", help="a policy checkpoint")
    p.add_argument("--clip", default=None, help="clip (default: the checkpoint's, or walk for --expert)")
    p.add_argument("--action-space", default=None, choices=["pd_target", "torque"],
                   help="for --expert (default pd_target); a checkpoint drives its own")
    p.add_argument("--episodes", type=int, default=5, help="episodes, from phase 0, each with noised starting angles")
    p.add_argument("--seconds", type=float, default=None, help="horizon (default 20 s looping, else the clip)")
    p.add_argument("--init-noise", type=float, default=0.01,
                   help="std of hinge-angle noise at the start [rad], so episodes differ (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise and the perturbations")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--video", default=None, help="write an MP4 of the first episode beside the reference")
    p.add_argument("--video-seconds", type=float, default=10.0, help="length of the --video [s]")
    p.add_argument("--action-noise", type=float, default=0.0, help="std of noise on executed actions")
    p.add_argument("--push-force", type=float, default=0.0, help="random horizontal pushes on the root [N]")
    p.add_argument("--push-every", type=float, default=2.0, help="seconds between pushes (each 0.2 s long)")
    _add_fall_option(p, "the checkpoint's, or clip for --expert")
    _add_expert_options(p, default=None)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("trpo", help="TRPO fine-tuning on the imitation reward, from a checkpoint or from scratch")
    p.add_argument("--init", default=None, help="checkpoint to start from (SFT/DAgger); none: from scratch")
    p.add_argument("--clip", default=None, help="clip (default: the checkpoint's, or walk)")
    p.add_argument("--action-space", default=None, choices=["pd_target", "torque"],
                   help="from scratch (default pd_target); with --init the checkpoint's")
    _add_fall_option(p, "the checkpoint's, or clip")
    p.add_argument("--out", required=True, help="run folder: policy.pt, log.csv, learning_curve.png (resumes)")
    from .settings import TRPOConfig

    add_options(p, TRPOConfig, {"samples": "--samples", "num_envs": "--num-envs", "steps_per_env": "--steps",
                                "max_kl": "--max-kl", "sim_threads": "--sim-threads", "init_log_std": "--init-log-std",
                                "set_log_std": "--log-std", "critic_warmup_iters": "--critic-warmup",
                                "checkpoint_every": "--checkpoint-every", "zero_start_share": "--zero-start-share"})
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling and the initial weights")
    p.set_defaults(func=_cmd_trpo)

    p = sub.add_parser("learn", help="from a clip to a policy that performs it: the search (else guided) expert's "
                                     "DAgger recipe, resumable",
                       description="Check the expert alone from phase 0 (the search expert; where it falls, the "
                       "guided expert; a clip neither performs is refused, saying when and why each fell), build "
                       "the mocap store, fit, run DAgger rounds until a round keeps every "
                       "episode up for the whole horizon (or the rounds run out), optionally TRPO, evaluate, and "
                       "write policy.pt, summary.json, learning_curve.png/.csv and best.mp4 into --out. The same "
                       "command resumes a stopped run. Example: imitate learn walk (tens of minutes on 2 cores)")
    p.add_argument("clip", help="clip name or path to your own clip")
    p.add_argument("--out", default=None, help="output folder (default runs/learn-CLIP; resumes if present)")
    _learn_options(p)
    _add_ray_options(p, "")
    p.set_defaults(func=_cmd_learn)

    p = sub.add_parser("zoo", help="learn over many clips (the classic 15 by default), one table; resumable",
                       description="Run imitate learn on every clip with the same recipe into OUT/CLIP, one after "
                       "another (or as Ray tasks with --ray), and print one table: the expert, normalised return, "
                       "survival, episodes whole, how they ended, errors, labels, env samples and minutes. Writes "
                       "OUT/zoo.md and OUT/zoo.csv after every clip. The same command resumes; finished clips are not "
                       "learned again. Example: imitate zoo walk run --out runs/zoo")
    p.add_argument("clips", nargs="*", help="clip names or paths (default: the 15 classic clips)")
    p.add_argument("--out", default="runs/zoo", help="output folder (resumes if present)")
    _learn_options(p)
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="learn each clip as a Ray task (pip install 'imitate[ray]'): auto joins the running "
                        "cluster, no address starts one here; --out must be on a filesystem every node sees")
    p.add_argument("--cpus-per-clip", type=int, default=2, help="with --ray: CPUs each clip's task holds")
    p.set_defaults(func=_cmd_zoo)

    p = sub.add_parser("pipeline", help="the main job on a small default: walk learned from the search expert "
                                        "(imitate learn on a small budget), or --expert pd")
    p.add_argument("--clip", default="walk", help="clip name or path (default: walk)")
    p.add_argument("--action-space", default="pd_target", choices=["pd_target", "torque"],
                   help="pd_target: actions are servo targets; torque: actions are joint torques (--expert pd only: "
                        "the search recipe's residual learner adds servo targets)")
    p.add_argument("--expert", default="search", choices=["search", "pd"],
                   help="the recipe: search (imitate learn's on a small budget: the search expert's labels, DAgger "
                        "until a round walks, confirmed; walk walks in minutes) or pd (about a minute; its policies "
                        "fall: the teaching example of why balance needs a better expert)")
    p.add_argument("--rounds", type=int, default=None, help="the most DAgger rounds (default: the recipe's, 6 or 3)")
    p.add_argument("--episodes", type=int, default=None, help="final evaluation episodes (default: the recipe's, 5 "
                                                                "or 3)")
    p.add_argument("--trpo-samples", type=int, default=None,
                   help="TRPO samples after DAgger, 0: no TRPO (default: the recipe's, 0 or 8192)")
    p.add_argument("--video-seconds", type=float, default=10.0,
                   help="seconds of RUN_DIR/best.mp4 beside the reference: the final policy (search) or the best "
                        "DAgger round (pd) (0: none)")
    p.add_argument("--out", default=None, help="run folder (default runs/pipeline-CLIP, or runs/pipeline-pd-CLIP for "
                                               "--expert pd; resumes if present)")
    p.set_defaults(func=_cmd_pipeline)
    _set_formatter(parser)
    return parser


def _learn_options(p: argparse.ArgumentParser) -> None:
    """The recipe's options, shared by learn and zoo."""
    p.add_argument("--expert", default="auto", choices=["auto", "search", "guided", "pd"],
                   help="the recipe's expert: auto (search, and guided where the search alone falls), search (the "
                        "one that teaches balance on walk, crawl, kick), guided (the search around a trajectory "
                        "reconstructed offline: performs run, roll, punch and the getups too, at several times the "
                        "cost a label, after minutes of preparation once per clip) or pd (fast; cannot balance)")
    p.add_argument("--rounds", type=int, default=None, help="the most DAgger rounds, the label budget (default: the "
                                                              "recipe's, 12 or 3)")
    p.add_argument("--episodes", type=int, default=5, help="final evaluation episodes from phase 0")
    p.add_argument("--trpo-samples", type=int, default=0,
                   help="TRPO samples after DAgger (0: none); the search and guided recipes explore with noise e^-4 "
                        "(a balancing policy needs small noise) and start a quarter of the episodes at time 0, the pd "
                        "recipe with its own TRPO settings")
    p.add_argument("--video-seconds", type=float, default=10.0, help="seconds of best.mp4 (0: none)")
    p.add_argument("--no-expert-check", dest="expert_check", action="store_false",
                   help="learn even if the expert alone falls from phase 0 (the search and guided recipes check it "
                        "first and refuse such a clip, DAgger never outlives its expert; with auto: the search "
                        "expert's recipe, unchecked)")


def _set_formatter(parser: argparse.ArgumentParser) -> None:
    """The help formatter on every subcommand's parser too."""
    parser.formatter_class = _HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _set_formatter(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImitateError as exc:
        print(f"imitate: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `imitate ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is quiet
        return 141
    except KeyboardInterrupt:  # one line, not a traceback (store appends are all-or-nothing)
        print("imitate: interrupted; every store keeps exactly its completed rounds, and the same command "
              "resumes (dataset build, dagger, trpo, pipeline)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
