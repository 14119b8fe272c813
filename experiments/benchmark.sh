#!/usr/bin/env bash
# The study's benchmark (README "The study"): every method (the proposed U-Net, Martini's U-Net,
# geodesic active contours, region growing) on the same subject folds of one synthetic cohort, as
# one Hydra multirun (methods x folds x seeds; conf/scale/<SCALE>.yaml), each tested on its
# held-out fold with T2* agreement; then the networks on every slice of a cohort of another seed
# that no run trained on (external evaluation); then the study's tables and figures.
#   bash experiments/benchmark.sh SCALE [OUT_DIR] [TRAIN_OVERRIDES...]
# SCALE: ci (a few minutes: checks the chain), demo, cpu (the longest run on a 2-core CPU),
# full (the paper's size, for GPUs). OUT_DIR defaults to outputs/benchmark_<SCALE>.
# Started again with the same OUT_DIR, it keeps the cohorts and every job that finished
# (skip_finished=true) and runs the rest: an interrupted benchmark resumes.
set -euo pipefail
scale=${1:?usage: bash experiments/benchmark.sh ci|demo|cpu|full [OUT_DIR] [TRAIN_OVERRIDES...]}
out=${2:-outputs/benchmark_$scale}
shift $(($# < 2 ? $# : 2))
case $scale in
  ci) cohort_size=(--subjects 6) ;;
  demo | cpu | full) cohort_size=() ;;
  *) echo "benchmark.sh: unknown scale '$scale' (ci, demo, cpu, full)" >&2; exit 2 ;;
esac
mkdir -p "$out"
SECONDS=0
[ -f "$out/cohort.h5" ] || cmrseg-synth "$out/cohort.h5" "${cohort_size[@]}" --no-progress
[ -f "$out/external.h5" ] || cmrseg-synth "$out/external.h5" "${cohort_size[@]}" --seed 7 \
  --no-progress
cmrseg-train scale="$scale" data.path="$out/cohort.h5" hydra.sweep.dir="$out/train" \
  extras.print_config=false "$@"
train_s=$SECONDS
# the networks' tested checkpoints (run.json: method, checkpoint), scored on the other cohort
ckpts=$(python - "$out/train" <<'PY'
import json, pathlib, sys
paths = []
for record in sorted(pathlib.Path(sys.argv[1]).glob("*/run.json")):
    run = json.loads(record.read_text())
    if run.get("status") == "finished" and run.get("method") in ("unet", "martini_unet"):
        paths.append(str(record.parent / run["checkpoint"]))
print(",".join(paths))
PY
)
if [ -n "$ckpts" ]; then
  cmrseg-eval -m ckpt_path="$ckpts" data.path="$out/external.h5" split=all skip_finished=true \
    hydra.sweep.dir="$out/external" extras.print_config=false
fi
external_s=$((SECONDS - train_s))
cmrseg-report "$out/train" "$out/external" "$out/report"
echo "benchmark $scale wall time: train and test ${train_s} s, external ${external_s} s," \
  "total ${SECONDS} s; report: $out/report/report.md"
