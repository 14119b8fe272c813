#!/usr/bin/env bash
# The demo (`make demo`): synthesize the default cohort (preset clinical), train the paper's U-Net
# sized for a 2-core CPU (conf/experiment/demo.yaml), evaluate it and print the Table-1 metrics.
#   bash experiments/demo.sh [OUT_DIR]   (default outputs/demo)
set -euo pipefail
out=${1:-outputs/demo}
mkdir -p "$out"
[ -f "$out/cohort.h5" ] || cmrseg-synth "$out/cohort.h5" --no-progress
cmrseg-train experiment=demo data.path="$out/cohort.h5" hydra.run.dir="$out/train" \
  extras.print_config=false
cmrseg-eval ckpt_path="$out/train/checkpoints/last.ckpt" hydra.run.dir="$out/eval" \
  extras.print_config=false
