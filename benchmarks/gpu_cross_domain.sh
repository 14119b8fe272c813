#!/usr/bin/env bash
# Issue 16 on one lent GPU machine (H100 or H200, 16 CPU cores), with the package installed there
# (pip install -e . or PYTHONPATH): pre-registration 11 of benchmarks/README.md.
#   1. fast_dev_run of experiment=demo under trainer=ddp and experiment=martini under trainer=gpu
#      on a 3-subject file, in the background while the files are synthesized;
#   2. bench_cross_domain_gpu.py: 2000 randomized subjects (--jobs 14) and the five test files
#      side by side, the randomized recipe 6 epochs on the GPU, the five evaluations side by side,
#      judged against the in-domain scores of run4 (benchmarks/README.md, pre-registration 10);
#   3. the trained network without its optimizer state (about 18 MB, cmrseg-eval reads it) and the
#      runs' tables copied to RESULTS_DIR.
#   bash benchmarks/gpu_cross_domain.sh [WORK_DIR] [RESULTS_DIR] [bench_cross_domain_gpu.py options]
set -uo pipefail
work=${1:-outputs/gpu_cross_domain}
results=${2:-$work/results}
shift $(($# < 2 ? $# : 2))
mkdir -p "$work" "$results"
export WANDB_MODE=offline PYTHONUNBUFFERED=1
SECONDS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

(
  cmrseg-synth "$work/fdr.h5" --subjects 3 --no-progress
  for run in "experiment=demo trainer=ddp" "experiment=martini trainer=gpu"; do
    name=${run//[ =]/_}
    # shellcheck disable=SC2086
    if cmrseg-train $run data.path="$work/fdr.h5" logger=csv +trainer.fast_dev_run=true test=false \
      extras.print_config=false hydra.run.dir="$work/fdr/$name" >"$work/fdr_$name.log" 2>&1; then
      echo "fast_dev_run $run: ok"
    else
      echo "fast_dev_run $run: FAILED"; tail -12 "$work/fdr_$name.log"
    fi
  done
) >"$results/fdr.txt" 2>&1 &

python benchmarks/bench_cross_domain_gpu.py "$work/bench" --subjects 2000 --epochs 6 --jobs 14 \
  --workers 12 --max-minutes 5 \
  --in-domain clinical=0.913 hard=0.829 out_of_range=0.942 ellipsoid=0.816 "$@" \
  >"$results/bench.log" 2>&1
status=$?
wait
cat "$results/fdr.txt"
grep -q FAILED "$results/fdr.txt" && status=1

python - "$work/bench/train/randomized_gpu/checkpoints/last.ckpt" "$results/model.ckpt" <<'PY'
import sys

import torch

checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=False)  # our own run's
for key in ("optimizer_states", "lr_schedulers", "loops", "callbacks"):
    checkpoint.pop(key, None)
torch.save(checkpoint, sys.argv[2])
PY
cp "$work"/bench/{report.md,cross_domain_gpu.csv,timings.csv} "$results/" 2>/dev/null
(cd "$work/bench" && tar czf "$results/runs.tgz" eval/*/slices.csv eval/*/metrics.csv \
  eval/*/run.json eval/*/t2star train/randomized_gpu/csv train/randomized_gpu/run.json logs)
cat "$results/report.md" 2>/dev/null || tail -30 "$results/bench.log"
echo "gpu cross-domain: ${SECONDS} s, status $status"
exit $status
