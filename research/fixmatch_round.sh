#!/bin/bash
# A round of FixMatch variants, interleaved: for each of quick's six finished runs (results/quick's,
# models/results-quick, then BENCHMARKS §6.5's under the quota, $SLOW_BASE or models/slow50), every variant in
# turn is trained by `fixmatch_variants.sh` on that run (its baseline, rotation model and fine-tuned classifier
# copied), so the variants of a pair share their base run and their hour. Appends the script's lines to
# OUT/runs.log and keeps each run's FixMatch stage.json and history.csv in OUT/NAME-TAG/seedS (TAG: q or s), for
# `python research/variants_table.py OUT`.
#
#   bash research/fixmatch_round.sh results/round19 "ref|" "soft|fixmatch.soft=true"
#
# usage: fixmatch_round.sh OUT "NAME|KEY=VALUE ..." ...
set -e
out=$1; shift
mkdir -p $out
for tag in q s; do
  base=models/results-quick; [ $tag = s ] && base=${SLOW_BASE:-models/slow50}
  for seed in 0 1 2; do
    for v in "$@"; do
      name=${v%%|*}-$tag
      BASE=$base bash research/fixmatch_variants.sh $name "${v#*|}" $seed >> $out/runs.log
      mkdir -p $out/$name/seed$seed
      cp models/fmvar/$name/seed$seed/fixmatch/{stage.json,history.csv} $out/$name/seed$seed/
    done
  done
done
