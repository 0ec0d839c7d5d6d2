"""The ``imitate`` command: the only module that parses arguments or prints."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import ImitateError


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
            console.print("[yellow]The 15 classic clips come with pybullet: pip install 'imitate[clips]'[/]")
    return 0


def _track(clip: str, action_spaces: list[str], seconds: float | None):
    from .env import EnvConfig
    from .evaluate import evaluate, expert_controller
    from .expert import PDExpert
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


def _cmd_pipeline(args) -> int:
    """The main job on a small default; it grows as the learners land."""
    from .console import clips_table, console, evaluation_table

    console.rule(f"[bold]imitate pipeline: {args.clip}")
    motion, results = _track(args.clip, ["pd_target", "torque"], args.seconds)
    source = "pybullet" if "pybullet_data" in str(motion.path) else str(motion.path)
    console.print(clips_table([{**motion.info, "source": source}]))
    console.print(evaluation_table(results, f"Stage 1: PD servos tracking '{motion.name}' from phase 0 (no learning)"))
    console.print("Joint-level PD tracking keeps the joints near the reference but cannot balance "
                  "the unactuated root: the humanoid falls after about a second.")
    return 0


def _cmd_dataset_build(args) -> int:
    from .console import console, progress_bar, store_tables
    from .dataset import BuildConfig, build_mocap_store
    from .env import EnvConfig
    from .motion import clip_name, resolve_clip
    from .store_stats import summarize

    build = BuildConfig(offsets=args.offsets, joint_noise_rad=args.joint_noise,
                        velocity_noise_rad_s=args.velocity_noise, copies=args.copies, seed=args.seed,
                        valid_every=args.valid_every)
    config = EnvConfig(clip=args.clip, action_space=args.action_space)
    out = args.out or f"datasets/{clip_name(resolve_clip(args.clip))}.h5"
    with progress_bar() as bar:
        task = bar.add_task(f"labelling {args.clip} states", total=build.num_episodes)
        store = build_mocap_store(out, config, build, overwrite=args.overwrite,
                                  progress=lambda done, total: bar.update(task, completed=done))
    for table in store_tables(summarize(store))[:2]:
        console.print(table)
    console.print(f"wrote {out}")
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
    print(f"{args.path}: valid ({counts['episodes']} episodes, {counts['steps']} steps)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imitate", description="DAgger-centred imitation learning of "
                                     "physics-based character motion (MuJoCo humanoid, DeepMimic clips).")
    parser.add_argument("--version", action="version", version=f"imitate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("motions", help="list every clip imitate can find (motions/, pybullet)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_motions)

    p = sub.add_parser("track", help="PD servos track a clip from phase 0; report survival and reward terms")
    p.add_argument("--clip", default="walk", help="clip name or path (default: walk)")
    p.add_argument("--action-space", default="both", choices=["pd_target", "torque", "both"])
    p.add_argument("--seconds", type=float, default=None, help="horizon [s] (default: 20 looping, else the clip)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_track)

    p = sub.add_parser("dataset", help="build, inspect and validate HDF5 demonstration stores")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser("build", help="build a store from a clip: reference and perturbed states, expert labels")
    b.add_argument("clip", help="clip name or path")
    b.add_argument("--out", help="store path (default: datasets/CLIP.h5)")
    b.add_argument("--action-space", default="pd_target", choices=["pd_target", "torque"])
    b.add_argument("--offsets", type=int, default=4, help="clean passes over the clip (default 4)")
    b.add_argument("--joint-noise", type=float, nargs="*", default=[0.05, 0.1],
                   help="hinge-angle noise std per level [rad]")
    b.add_argument("--velocity-noise", type=float, nargs="*", default=[0.5, 1.0],
                   help="hinge-rate noise std per level [rad/s]")
    b.add_argument("--copies", type=int, default=4, help="perturbed passes per noise level (default 4)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--valid-every", type=int, default=10, help="every N-th episode is validation (default 10)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing store")
    b.set_defaults(func=_cmd_dataset_build)
    st = dsub.add_parser("stats", help="rich tables of a store's metadata, rounds, fields and splits")
    st.add_argument("path")
    st.add_argument("--json", action="store_true", help="print JSON instead of tables")
    st.set_defaults(func=_cmd_dataset_stats)
    v = dsub.add_parser("validate", help="check schema, shapes, finiteness and statistics; non-zero exit on a problem")
    v.add_argument("path")
    v.set_defaults(func=_cmd_dataset_validate)

    p = sub.add_parser("pipeline", help="the main job on a small default (see README)")
    p.add_argument("--clip", default="walk", help="clip name or path (default: walk)")
    p.add_argument("--seconds", type=float, default=None, help="evaluation horizon [s]")
    p.set_defaults(func=_cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImitateError as exc:
        print(f"imitate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
