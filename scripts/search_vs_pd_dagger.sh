#!/usr/bin/env bash
# DAgger from the search expert against DAgger from the PD expert, same labels budget, on a clip
# (default walk): build each store, run the rounds, print each round table (20 s evaluations).
# Usage: scripts/search_vs_pd_dagger.sh [CLIP] [ROUNDS] [OUT]; slow with the search expert
# (about 0.1-0.2 s per label on 2 cores).
set -euo pipefail
clip=${1:-walk}; rounds=${2:-4}; out=${3:-runs/search-vs-pd-$clip}
imitate=${IMITATE:-imitate}
for expert in pd search; do
  $imitate dataset build "$clip" --out "$out/$expert/$clip.h5" --expert "$expert" --offsets 4 --copies 2 --overwrite
  $imitate dagger --data "$out/$expert/$clip.h5" --out "$out/$expert/dagger" --rounds "$rounds" --expert "$expert" \
    --eval-seconds 20 --eval-episodes 3
done
