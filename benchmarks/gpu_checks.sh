#!/usr/bin/env bash
# The GPU checks, one script for one lent GPU machine (H100 or H200, 16 CPU cores), with the
# package installed there (pip install -e . or PYTHONPATH):
#   1. Lightning step vs plain PyTorch loop and inference speed on the GPU (bench_train_step.py);
#   2. fast_dev_run of both networks under trainer=gpu and trainer=ddp (all visible GPUs);
#   3. the long_cpu recipe (conf/experiment/long_cpu.yaml, same epochs and data) on the GPU for
#      the presets clean, clinical and hard at once, each evaluated on its test subjects on the
#      CPU (float32, as cmrseg-eval does by default). The CPU run of the same recipe is
#      experiments/long_cpu.sh.
#   bash benchmarks/gpu_checks.sh [WORK_DIR] [RESULTS_DIR]
set -uo pipefail
work=${1:-outputs/gpu_checks}
results=${2:-$work}
mkdir -p "$work" "$results"
export WANDB_MODE=offline PYTHONUNBUFFERED=1
SECONDS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

presets=(clean clinical hard)
for p in "${presets[@]}"; do
  mkdir -p "$work/$p"; cmrseg-synth "$work/$p/cohort.h5" --preset "$p" --no-progress >"$work/$p/synth.log" 2>&1 &
done
wait
echo "synth (3 presets in parallel): ${SECONDS} s"

[ -n "${SKIP_BENCH:-}" ] || python benchmarks/bench_train_step.py --device cuda --steps 50 --threads 4

cohort="$work/clinical/cohort.h5"
status=0
for run in "experiment=demo trainer=gpu" "experiment=martini trainer=gpu" \
  "experiment=demo trainer=ddp" "experiment=martini trainer=ddp"; do
  name=${run//[ =]/_}
  # shellcheck disable=SC2086
  if cmrseg-train $run data.path="$cohort" logger=csv +trainer.fast_dev_run=true test=false \
    extras.print_config=false hydra.run.dir="$work/fdr/$name" >"$work/fdr_$name.log" 2>&1; then
    echo "fast_dev_run $run: ok"
  else
    echo "fast_dev_run $run: FAILED"; tail -20 "$work/fdr_$name.log"; status=1
  fi
done

start=$SECONDS
for p in "${presets[@]}"; do
  cmrseg-train experiment=long_cpu trainer=gpu data.path="$work/$p/cohort.h5" data.num_workers=4 \
    logger=csv test=false extras.print_config=false hydra.run.dir="$work/$p/train" \
    >"$work/$p/train.log" 2>&1 &
done
wait
echo "long_cpu recipe on the GPU, 3 presets at once: $((SECONDS - start)) s"
for p in "${presets[@]}"; do
  cmrseg-eval ckpt_path="$work/$p/train/checkpoints/last.ckpt" hydra.run.dir="$work/$p/eval" \
    extras.print_config=false >"$work/$p/eval.log" 2>&1 || { tail -20 "$work/$p/eval.log"; status=1; }
  echo "== $p"
  cat "$work/$p/eval/metrics.csv" 2>/dev/null || { tail -20 "$work/$p/train.log"; status=1; }
  cp "$work/$p/eval/metrics.csv" "$results/metrics_$p.csv" 2>/dev/null
done
echo "gpu checks: ${SECONDS} s, status $status"
exit $status
