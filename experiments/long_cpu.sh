#!/usr/bin/env bash
# The longer CPU runs from scratch (conf/experiment/long_cpu.yaml, or long_cpu_all_echoes;
# 35-45 min on an idle 2-core CPU) on one synthetic preset: synthesize the default 51-subject
# cohort with that preset, train, evaluate on the test subjects and print the Table-1 metrics
# and the wall time of each stage.
#   bash experiments/long_cpu.sh [OUT_DIR] [PRESET] [TRAIN_OVERRIDES...]
#   (defaults: outputs/long_cpu/PRESET, clinical; PRESET: clean, clinical, hard or ideal;
#   an experiment=... override replaces experiment=long_cpu, e.g. experiment=long_cpu_all_echoes)
set -euo pipefail
preset=${2:-clinical}
out=${1:-outputs/long_cpu/$preset}
shift $(($# < 2 ? $# : 2))
mkdir -p "$out"
SECONDS=0
[ -f "$out/cohort.h5" ] || cmrseg-synth "$out/cohort.h5" --preset "$preset" --no-progress
echo "long_cpu: synth ($preset) ${SECONDS} s"
experiment=(experiment=long_cpu)
for arg in "$@"; do [[ $arg == experiment=* ]] && experiment=(); done
bash "$(dirname "$0")/demo.sh" "$out" "${experiment[@]}" "$@"
