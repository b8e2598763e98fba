#!/usr/bin/env bash
# The GPU checklist (../shared/GPU_CHECKLIST.md) in one run, for a GPU machine that has
# PyTorch but no Ray, no Optuna and no package index:
#
#   MNIST_DIST_DATA_DIR=/path/to/data bash benchmarks/gpu_checklist.sh OUT_DIR
#
# Writes OUT_DIR/log.txt, one JSON per timed step and runs.tgz (the training runs' files).
# The whole run ends within $GPU_CHECK_SECONDS (default 570): each step has its own time limit,
# cut to what is left, so a slow one cannot cost the rest. The timed steps (1-4) run alone;
# the accuracy runs go last, all at once, each printing a line per epoch as it goes.
set -u
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-570}))
limit() { local left=$((deadline - SECONDS)); echo $(( $1 < left ? $1 : (left > 1 ? left : 1) )); }
out=${1:?usage: gpu_checklist.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
: "${MNIST_DIST_DATA_DIR:?set MNIST_DIST_DATA_DIR to the folder holding mnist/ and fashion-mnist/}"
log="$out/log.txt"
step() { echo "=== $(date -u +%T) $*" | tee -a "$log"; }

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())"
} 2>&1 | tee -a "$log"

step "6. the GPU-only tests"
timeout $(limit 90) python3 -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider 2>&1 | tail -15 | tee -a "$log"

step "1+3. one epoch of every architecture, fp32 and AMP"
timeout $(limit 200) python3 benchmarks/gpu_epochs.py --out "$out/epochs.json" 2>&1 | tee -a "$log"

step "2. training loop vs plain loop vs DataLoader"
for bs in 32 128; do
  timeout $(limit 45) python3 benchmarks/train_step.py --arch lenet5 --batch-size $bs --images 20000 --repeats 3 \
    --loader-workers 4 2>&1 | tee -a "$log"
done

step "4. sharing one GPU"
timeout $(limit 100) python3 benchmarks/gpu_share.py --procs 1 2 4 8 --arch lenet5 --seconds 6 --out "$out/share.json" 2>&1 | tee -a "$log"

step "sweeps with 1 and 4 trials sharing the GPU (needs Ray and Optuna)"
if python3 -c "import ray, optuna" 2>/dev/null; then
  timeout $(limit 240) python3 benchmarks/gpu_sweeps.py --epochs 2 --trials 8 --out "$out/sweeps.jsonl" 2>&1 | tee -a "$log"
else
  echo "skipped: Ray or Optuna is not installed here (benchmarks/gpu/pack_ray.sh packs them to carry)" | tee -a "$log"
fi

step "3+5. alexnet's baseline run; cnn_bn, the source's config and the transferred one, 3 seeds"
runs="$out/runs"
mkdir -p "$runs"
pids=()
until_end=$(limit 600)
until_end=$((until_end > 20 ? until_end - 15 : 5))  # 15 s for the summary and the archive
train() {  # NAME ARCH [FLAGS]
  local name=$1; shift
  OMP_NUM_THREADS=1 timeout $until_end python3 -m mnist_dist.cli train "$@" --results-dir "$runs" \
    --name "$name" --progress-every 600 >"$runs/$name.log" 2>&1 & pids+=($!)
}
train alexnet-baseline alexnet
for seed in 1000 2000 3000; do
  train cnn_bn-baseline-$seed cnn_bn --seed $seed
  train cnn_bn-transfer-$seed cnn_bn --config benchmarks/gpu/cnn_bn_transfer.yaml --seed $seed
  train cnn_bn-light-$seed cnn_bn --config benchmarks/gpu/cnn_bn_transfer_light.yaml --seed $seed
done
wait "${pids[@]}"
python3 - "$runs" <<'EOF' 2>&1 | tee -a "$log"
import json, statistics, sys
from pathlib import Path
rows = {}
for f in sorted(Path(sys.argv[1]).glob("*/run.json")):
    r = json.loads(f.read_text())
    print(f"{r['name']:<26} {r['status']:<20} epochs {r['epochs_run']:>2}  {r['train_time_s']:6.1f}s  "
          f"{r['images_per_sec']:>8,.0f} img/s  val {r['best_val_acc']:.4f}  test {r.get('test_acc', 0):.4f}")
    rows.setdefault(r["name"].rsplit("-", 1)[0], []).append(r.get("test_acc", 0))
for f in sorted(Path(sys.argv[1]).glob("*.log")):  # a run cut by the time limit: its last epoch
    if not (f.with_suffix("") / "run.json").exists():
        epochs = [l.strip() for l in f.read_text().splitlines() if l.strip().startswith("epoch")]
        print(f"{f.stem:<26} cut after {len(epochs)} epochs: {epochs[-1] if epochs else '-'}")
for k, v in rows.items():
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    print(f"{k:<20} test {statistics.mean(v) * 100:.2f} +- {sd * 100:.2f}%  ({', '.join(f'{x:.4f}' for x in v)})")
EOF
(cd "$runs" && tar czf "$out/runs.tgz" --exclude='*.pt' --exclude='*.npz' .) && rm -rf "$runs"
step "done"
