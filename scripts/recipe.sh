#!/usr/bin/env bash
# The full-budget recipe for any clip: mocap store -> SFT -> DAgger -> TRPO -> evaluation + video.
#
# Usage: scripts/recipe.sh CLIP [OUT] ; settings through the environment:
#   EXPERT=pd|search (default pd)   ACTION_SPACE=pd_target|torque (default pd_target)
#   EXPERT_OPTS="--search-label mppi --search-cold --search-knots 4 --search-temperature 0.3" (with
#     EXPERT=search: labels a learner can fit; see README)   DAGGER_OPTS="--residual" (extra dagger options)
#   ROUNDS=10   NUM_ENVS=16   STEPS=300   KEEP_ROUNDS=5   TRPO_SAMPLES=10000000   EPISODES=5
#   TRPO_OPTS="--log-std -4" (extra trpo options; a policy that balances needs small exploration noise)
# Every stage resumes where it stopped if the command is run again with the same OUT.
# With the defaults (TRPO 10M samples) this takes many hours on 2 cores; try TRPO_SAMPLES=200000 first.
set -euo pipefail
clip=${1:?usage: scripts/recipe.sh CLIP [OUT]}
out=${2:-runs/recipe-$clip}
expert=${EXPERT:-pd}; space=${ACTION_SPACE:-pd_target}
imitate=${IMITATE:-imitate}
mkdir -p "$out"
if [ ! -f "$out/$clip.h5" ]; then
  $imitate dataset build "$clip" --out "$out/$clip.h5" --action-space "$space" --expert "$expert" ${EXPERT_OPTS:-} --offsets 8 --copies 8
fi
$imitate dagger --data "$out/$clip.h5" --out "$out/dagger" --rounds "${ROUNDS:-10}" --expert "$expert" ${EXPERT_OPTS:-} \
  --num-envs "${NUM_ENVS:-16}" --steps "${STEPS:-300}" --keep-rounds "${KEEP_ROUNDS:-5}" --eval-seconds 20 ${DAGGER_OPTS:-}
last=$(ls "$out"/dagger/round_*.pt | sort | tail -n 1)
$imitate trpo --init "$last" --samples "${TRPO_SAMPLES:-10000000}" --out "$out/trpo" ${TRPO_OPTS:-}
for policy in "$last" "$out/trpo/policy.pt"; do
  $imitate evaluate "$policy" --episodes "${EPISODES:-5}" --json > "${policy%.pt}.eval.json"
  $imitate evaluate "$policy" --episodes "${EPISODES:-5}"
done
$imitate evaluate "$out/trpo/policy.pt" --episodes 1 --video "$out/trpo.mp4"
