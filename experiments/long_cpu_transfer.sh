#!/usr/bin/env bash
# The documented longer CPU run (about 36 min on an idle 2-core CPU) on one synthetic preset:
#   1. synthesize a pretraining cohort of the preset with its own seed (101): 51 subjects that
#      are not in the target cohort;
#   2. pretrain on it (conf/experiment/long_cpu_pretrain.yaml, 160 epochs);
#   3. experiments/long_cpu.sh with experiment=long_cpu_finetune: synthesize the target cohort
#      (the default 51 subjects, seed 0), fine-tune every layer on it (80 epochs), evaluate on its
#      test subjects and predict three new patients.
# Wall time of each stage is printed. TRAIN_OVERRIDES go to both trainings (e.g. seed=1).
#   bash experiments/long_cpu_transfer.sh [OUT_DIR] [PRESET] [TRAIN_OVERRIDES...]
#   (defaults: outputs/long_cpu_transfer/PRESET, clinical; PRESET: clean, clinical, hard or ideal)
set -euo pipefail
preset=${2:-clinical}
out=${1:-outputs/long_cpu_transfer/$preset}
shift $(($# < 2 ? $# : 2))
mkdir -p "$out"
[ -f "$out/pretrain.h5" ] || cmrseg-synth "$out/pretrain.h5" --preset "$preset" --seed 101 \
  --no-progress
cmrseg-train experiment=long_cpu_pretrain data.path="$out/pretrain.h5" \
  hydra.run.dir="$out/pretrain" extras.print_config=false test=false "$@"
echo "long_cpu_transfer: pretrain ($preset, its synthesis included) ${SECONDS} s"
bash "$(dirname "$0")/long_cpu.sh" "$out" "$preset" experiment=long_cpu_finetune \
  model.init_from="$out/pretrain/checkpoints/last.ckpt" "$@"
