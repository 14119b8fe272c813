#!/usr/bin/env bash
# Choose the inference settings of the paper's U-Net on validation data: evaluate one checkpoint
# with echo 1 alone (first) and with softmax averaged over echoes 1-3 (mean_softmax), each without
# and with test-time rotations (none, rot90); keep the best val/jaccard as the defaults
# (model.echo_fusion, model.test_time_augmentation; conf/model/module/segmentation.yaml or the
# experiment config).
#   bash experiments/choose_echo_fusion.sh CKPT [OUT_DIR]
set -euo pipefail
ckpt=$1
out=${2:-outputs/echo_fusion}
for fusion in first mean_softmax; do
  for tta in none rot90; do
    cmrseg-eval ckpt_path="$ckpt" split=val echo_fusion="$fusion" test_time_augmentation="$tta" \
      hydra.run.dir="$out/${fusion}_$tta" callbacks=none extras.print_config=false
  done
done
grep -H "^jaccard" "$out"/*/metrics.csv
