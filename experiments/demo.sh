#!/usr/bin/env bash
# The demo (`make demo`): synthesize the default cohort (preset clinical), train the paper's U-Net
# sized for a 2-core CPU (conf/experiment/demo.yaml), evaluate its last checkpoint on the test
# subjects, print the Table-1 metrics and the wall time of each stage (about 5 min on an idle
# 2-core CPU).
#   bash experiments/demo.sh [OUT_DIR] [TRAIN_OVERRIDES...]   (default outputs/demo)
# e.g. the longer CPU run: bash experiments/demo.sh outputs/long experiment=long_cpu
set -euo pipefail
out=${1:-outputs/demo}
shift || true
overrides=("$@")
[ ${#overrides[@]} -gt 0 ] || overrides=(experiment=demo)
mkdir -p "$out"
SECONDS=0
[ -f "$out/cohort.h5" ] || cmrseg-synth "$out/cohort.h5" --no-progress
synth_s=$SECONDS
# test=false: cmrseg-eval below tests the model (and writes metrics.csv / metrics.json)
cmrseg-train "${overrides[@]}" data.path="$out/cohort.h5" hydra.run.dir="$out/train" \
  extras.print_config=false test=false
train_s=$((SECONDS - synth_s))
cmrseg-eval ckpt_path="$out/train/checkpoints/last.ckpt" hydra.run.dir="$out/eval" \
  extras.print_config=false
eval_s=$((SECONDS - synth_s - train_s))
# the contract's outputs on three new synthetic patients (same cohort T2*, new anatomy and noise)
[ -f "$out/new_patients.h5" ] || cmrseg-synth "$out/new_patients.h5" --subjects 3 --seed 99 \
  --no-progress
cmrseg-predict ckpt_path="$out/train/checkpoints/last.ckpt" input="$out/new_patients.h5" \
  output="$out/predict" hydra.run.dir="$out/predict/run" extras.print_config=false
predict_s=$((SECONDS - synth_s - train_s - eval_s))
echo "demo wall time: synth ${synth_s} s, train ${train_s} s, eval ${eval_s} s," \
  "predict ${predict_s} s, total ${SECONDS} s"
echo "results: $out/eval/metrics.csv, $out/eval/t2star/, $out/predict/t2star.csv," \
  "$out/predict/predictions.h5, $out/predict/report/index.html"
