#!/usr/bin/env bash
# DAgger from the search expert against DAgger from the PD expert, same labels budget, on a clip
# (default walk): build each store, run the rounds, print each round table (20 s evaluations).
# Usage: experiments/search_vs_pd_dagger.sh [CLIP] [ROUNDS] [OUT]; slow with the search expert
# (about 0.5 s per label on 2 cores: 12 rounds take about 100 min).  The search expert runs with
# the options that make its labels learnable (SEARCH_OPTS, default: the DAgger recipe, a cold
# MPPI search with noise at 4 knots and temperature 0.3; see README); both learners are residual
# policies (the networks fit the expert's correction to the observed reference).
set -euo pipefail
clip=${1:-walk}; rounds=${2:-12}; out=${3:-runs/search-vs-pd-$clip}
imitate=${IMITATE:-imitate}
search_opts=${SEARCH_OPTS:---search-label mppi --search-cold --search-knots 4 --search-temperature 0.3}
for expert in pd search; do
  opts=""; [ "$expert" = search ] && opts=$search_opts
  # an existing store is kept, so the script resumes after a kill as imitate dagger does
  # shellcheck disable=SC2086  # the options are words
  [ -f "$out/$expert/$clip.h5" ] ||
    $imitate dataset build "$clip" --out "$out/$expert/$clip.h5" --expert "$expert" $opts --offsets 4 --copies 4
  # shellcheck disable=SC2086
  $imitate dagger --data "$out/$expert/$clip.h5" --out "$out/$expert/dagger" --rounds "$rounds" --expert "$expert" \
    $opts --residual --steps 100 --eval-seconds 20 --eval-episodes 3
done
