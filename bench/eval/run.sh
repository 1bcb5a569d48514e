#!/usr/bin/env bash
# The active-learning simulation recorded in bench/EVAL.md: digits, breast cancer and wine (the
# datasets that ship with scikit-learn) and a 100,000-row make_classification pool.
#   bash bench/eval/run.sh [OUTPUT_DIR]      (needs `pip install .` and scikit-learn, matplotlib)
set -euo pipefail
out=${1:-eval-out}
all=random,least_confidence,margin,ratio,entropy,margin+diversity,margin+pca+explore
all+=,vote_entropy,consensus_entropy,kl_max,bald,variation_ratio
run() {
  local name=$1
  shift
  local start=$SECONDS
  quarry-eval --output-dir "$out/$name" "$@"
  echo "$name: $((SECONDS - start)) s" >&2
}
run digits --dataset digits --strategies "$all" --batch-size 10 --budget 200 --seeds 5
run breast_cancer --dataset breast_cancer --strategies "$all" --batch-size 10 --budget 150 --seeds 5
run wine --dataset wine --strategies "$all" --batch-size 5 --budget 60 --seeds 5
run synthetic --dataset synthetic --strategies random,margin,entropy,margin+diversity,margin+explore,bald \
  --batch-size 50 --budget 1000 --seeds 3
run synthetic_rf --dataset synthetic --model rf --strategies random,margin,entropy,margin+diversity,bald \
  --batch-size 50 --budget 1000 --seeds 3
