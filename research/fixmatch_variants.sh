#!/bin/bash
# FixMatch variants on the same base runs: each seed's baseline, rotation model and fine-tuned classifiers are
# copied from a finished run (research/copy_stage.py), only FixMatch is trained again with `--set` overrides,
# then every classifier is evaluated. Prints one line a seed: FixMatch's validation accuracy (mean of the last 5
# epochs, what the choice is made on; and the best epoch's), its seconds, and the test accuracies (for the record).
#
#   python benchmarks/results_table.py --preset quick --seeds 0 1 2 --name quick-now --data-dir ../shared/data/dogs
#   bash research/fixmatch_variants.sh ref "" 0 1 2
#   bash research/fixmatch_variants.sh r3 "fixmatch.ratio=3" 0 1 2
#
# usage: fixmatch_variants.sh NAME "KEY=VALUE ..." SEED... (base runs: $BASE, default models/results-quick-now)
set -e
. .venv/bin/activate
base=${BASE:-models/results-quick-now}
name=$1; sets=$2; shift 2
for s in "$@"; do
  d=models/fmvar/$name/seed$s
  rm -rf $d
  stages=""; for st in pretext baseline finetune_all finetune_1; do [ -d $base/seed$s/$st ] && stages="$stages $st"; done
  python research/copy_stage.py $base/seed$s $d $stages >/dev/null
  args=""; for kv in $sets; do args="$args --set $kv"; done
  t0=$(date +%s)
  python -m ssl_keras.run methods --run-dir $d --resume $args > $d.methods.log 2>&1
  t1=$(date +%s)
  python -m ssl_keras.run evaluate --run-dir $d --resume > $d.eval.log 2>&1
  python - $d $name $s $((t1-t0)) <<'PY'
import json,sys
d,name,s,t=sys.argv[1:]
st=json.load(open(f'{d}/fixmatch/stage.json'))
ev={k: json.load(open(f'{d}/{k}/test_metrics.json'))['accuracy'] for k in ('baseline','finetune_1','fixmatch')}
print(name, s, 'val_last', st.get('val_accuracy_last'), 'val_best', round(st.get('best_val_accuracy',0),3), 'secs', t, 'epochs', st.get('epochs'), 'test', ev)
PY
done
