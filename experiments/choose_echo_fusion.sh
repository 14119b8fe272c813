#!/usr/bin/env bash
# Choose model.echo_fusion on validation data: evaluate one checkpoint of the paper's U-Net with
# echo 1 alone (first) and with softmax averaged over echoes 1-3 (mean_softmax); keep the better
# val/jaccard as the default in conf/model/module/segmentation.yaml.
#   bash experiments/choose_echo_fusion.sh CKPT [OUT_DIR]
set -euo pipefail
ckpt=$1
out=${2:-outputs/echo_fusion}
for fusion in first mean_softmax; do
  cmrseg-eval ckpt_path="$ckpt" split=val echo_fusion="$fusion" hydra.run.dir="$out/$fusion" \
    extras.print_config=false
done
