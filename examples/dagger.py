"""DAgger from a script: a mocap store, DAgger rounds with an expert, evaluation and a video.

    python examples/dagger.py                      # walk, the PD expert, 3 rounds (about 2 min)
    python examples/dagger.py --expert best        # the tracking expert (prepared once, cached)
    python examples/dagger.py --clip path/to/my_clip.txt --out runs/my-example

Every call below is imitate's public API (``import imitate``).  The same command resumes a run
that was stopped.
"""

import argparse
from pathlib import Path

import imitate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="walk", help="clip name or path (default: walk)")
    p.add_argument("--expert", default="pd", choices=imitate.EXPERTS, help="the labelling expert (default: pd)")
    p.add_argument("--rounds", type=int, default=3, help="DAgger rounds (default 3)")
    p.add_argument("--steps", type=int, default=100, help="control steps per env per round (default 100)")
    p.add_argument("--epochs", type=int, default=30, help="SFT epochs of round 0 and of each round (default 30)")
    p.add_argument("--video-seconds", type=float, default=5.0, help="seconds of video (0: none)")
    p.add_argument("--out", default="runs/example", help="folder for the store, the run and the video")
    args = p.parse_args()
    out = Path(args.out)

    # 1. An env configuration and an expert for the clip.
    config = imitate.EnvConfig(clip=args.clip)
    clip = imitate.load_clip(args.clip)
    expert = imitate.make_expert(args.expert, clip, config)

    # 2. Round 0: the mocap store, states along the reference labelled by the expert.
    store_path = out / f"{clip.name}.h5"
    if not store_path.exists():
        imitate.build_mocap_store(store_path, config, imitate.BuildConfig(), expert=expert)
    print(f"store {store_path}: {sum(e['length'] for e in imitate.DemoStore(store_path).episode_index())} states")

    # 3. DAgger: the learner drives, the expert labels every state it visits, retrain.
    fit = imitate.SFTConfig(epochs=args.epochs)
    dagger = imitate.DAggerConfig(rounds=args.rounds, steps_per_env=args.steps, sft=fit, retrain=fit)
    results = imitate.run_dagger(out / "run", store_path, dagger, expert=expert,
                                 on_round=lambda r: print(f"round {r.round}: normalised return "
                                                          f"{r.evaluation['normalised_return']['mean']:.3f}"))

    # 4. Evaluate the best round from phase 0, and film it beside its reference.
    best = imitate.best_round(results)
    policy, trained_for, _ = imitate.load_checkpoint(out / "run" / best.checkpoint)
    result = imitate.evaluate(imitate.policy_controller(policy), trained_for, episodes=3, init_noise_rad=0.01)
    print(f"round {best.round}: normalised return {result.normalised_return.mean:.3f}, "
          f"survival {result.survival_s.mean:.2f} of {result.horizon_s:g} s")
    if args.video_seconds > 0:
        try:
            frames = imitate.render_video(imitate.policy_controller(policy), trained_for, out / "best.mp4",
                                          seconds=args.video_seconds)
            print(f"wrote {out / 'best.mp4'} ({frames} frames)")
        except imitate.ImitateError as exc:  # no offscreen OpenGL or no imageio here
            print(f"no video: {exc}")


if __name__ == "__main__":
    main()
