#!/usr/bin/env bash
# Transfer learning on synthetic data:
#   1. pretrain on a second cohort: all 51 subjects, its own seed (101) and contrast (preset hard);
#   2. fine-tune on a small target cohort (20 subjects, preset clinical) from the pretrained
#      checkpoint at lr 0.001 (conf/experiment/finetune_synth.yaml; the copy table is logged);
#   3. train the same target from scratch for comparison; evaluate both on the target test split.
#   bash experiments/transfer_learning.sh [OUT_DIR] [--freeze-encoder]
set -euo pipefail
out=${1:-outputs/transfer}
freeze=()
[ "${2:-}" = "--freeze-encoder" ] && freeze=("model.freeze_patterns=[encoder.*]")
mkdir -p "$out"
[ -f "$out/pretrain.h5" ] || cmrseg-synth "$out/pretrain.h5" --seed 101 --preset hard --no-progress
[ -f "$out/target.h5" ] || cmrseg-synth "$out/target.h5" --subjects 20 --seed 7 --no-progress
cmrseg-train experiment=pretrain_synth data.path="$out/pretrain.h5" hydra.run.dir="$out/pretrain" \
  test=false
cmrseg-train experiment=finetune_synth data.path="$out/target.h5" hydra.run.dir="$out/finetune" \
  model.init_from="$out/pretrain/checkpoints/last.ckpt" "${freeze[@]}"
cmrseg-train experiment=demo data.path="$out/target.h5" hydra.run.dir="$out/scratch"
for run in finetune scratch; do
  cmrseg-eval ckpt_path="$out/$run/checkpoints/last.ckpt" hydra.run.dir="$out/eval_$run" \
    extras.print_config=false
done
