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
