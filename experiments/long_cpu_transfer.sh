#!/usr/bin/env bash
# The documented longer CPU run (about 36 min on an idle 2-core CPU) on one synthetic preset:
#   1. synthesize the target cohort (the default 51 subjects, seed 0) and a pretraining cohort of
#      the same preset with its own seed (101): 51 other subjects;
#   2. pretrain (conf/experiment/long_cpu_pretrain.yaml, 160 epochs) on the pretraining cohort;
#   3. fine-tune every layer on the target cohort (long_cpu_finetune.yaml, 80 epochs), evaluate
#      on the target's test subjects and predict three new patients (experiments/demo.sh).
# Wall time of each stage is printed. TRAIN_OVERRIDES go to both trainings (e.g. seed=1).
#   bash experiments/long_cpu_transfer.sh [OUT_DIR] [PRESET] [TRAIN_OVERRIDES...]
#   (defaults: outputs/long_cpu_transfer/PRESET, clinical; PRESET: clean, clinical, hard or ideal)
set -euo pipefail
preset=${2:-clinical}
out=${1:-outputs/long_cpu_transfer/$preset}
shift $(($# < 2 ? $# : 2))
mkdir -p "$out"
SECONDS=0
[ -f "$out/cohort.h5" ] || cmrseg-synth "$out/cohort.h5" --preset "$preset" --no-progress
[ -f "$out/pretrain.h5" ] || cmrseg-synth "$out/pretrain.h5" --preset "$preset" --seed 101 \
  --no-progress
synth_s=$SECONDS
cmrseg-train experiment=long_cpu_pretrain data.path="$out/pretrain.h5" \
  hydra.run.dir="$out/pretrain" extras.print_config=false test=false "$@"
echo "long_cpu_transfer: synth ($preset, both cohorts) ${synth_s} s," \
  "pretrain $((SECONDS - synth_s)) s"
bash "$(dirname "$0")/demo.sh" "$out" experiment=long_cpu_finetune \
  model.init_from="$out/pretrain/checkpoints/last.ckpt" "$@"
