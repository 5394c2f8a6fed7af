#!/usr/bin/env bash
# The one prepared command for a GPU host (no .NET SDK there: it runs the published single-file
# `engine`). Each step is independent of the last one's success; logs and JSON go to OUT_DIR and a
# short table is printed last.
#   usage: tools/gpu-check.sh [OUT_DIR] [MINUTES]      (ENGINE=path/to/engine, default ./publish/engine)
# ARCHIVE=file.tar.gz packs OUT_DIR into that one file at the end (for hosts that hand back few files).
set -u
cd "$(dirname "$0")/.."
out=${1:-gpu-out}
minutes=${2:-8}
engine=${ENGINE:-./publish/engine}
# DEVICE=cpu MODEL=resnet18 WIDTH=4 BATCH=16 rehearses the whole script without a GPU (nvidia-smi and NCCL steps then fail, as they must).
device=${DEVICE:-cuda}
model=${MODEL:-resnet34}
width=${WIDTH:-64}
batch=${BATCH:-512}
mkdir -p "$out"
deadline=$(( $(date +%s) + minutes * 60 ))
summary="$out/summary.txt"
: > "$summary"

step() {
  local name=$1; shift
  local left=$(( deadline - $(date +%s) ))
  if [ "$left" -le 15 ]; then
    printf '%-14s SKIPPED (time bound reached)\n' "$name" | tee -a "$summary"
    return
  fi
  local t0=$(date +%s)
  echo "==> $name: $*"
  timeout "$left" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  tail -n 25 "$out/$name.log"
  if [ "$rc" -eq 0 ]; then
    printf '%-14s ok      %4d s  %s\n' "$name" "$secs" "$out/$name.log" | tee -a "$summary"
  else
    printf '%-14s FAILED  %4d s  rc %d  %s\n' "$name" "$secs" "$rc" "$out/$name.log" | tee -a "$summary"
  fi
}

step gpu nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
step devices "$engine" devices
large=--large
[ "$device" = cpu ] && large=
step kernels "$engine" check kernels --device "$device" $large --seed 1234
# The engine moves ILGPU's accelerator into the device's primary context (for NCCL). If the driver refused
# that (the error names ENGINE_CUDA_CONTEXT), keep ILGPU's own context for every later step and say so.
if grep -q '^kernels *FAILED' "$summary" && grep -q 'ENGINE_CUDA_CONTEXT' "$out/kernels.log"; then
  export ENGINE_CUDA_CONTEXT=own
  echo "primary context refused: ENGINE_CUDA_CONTEXT=own for the rest of the run (NCCL will not see the engine's buffers)" | tee -a "$summary"
  step kernels-own-context "$engine" check kernels --device "$device" $large --seed 1234
fi
# One-rank NCCL all-reduce on ILGPU buffers (the bench runs NCCL's self-check first and fails if it fails).
step nccl "$engine" bench allreduce --backend nccl --nproc 1 --sizes 4K,1M,64M
# ResNet-34, batch 512: 3 epochs of 20 steps; the first epoch pays for kernel compilation.
step engine-step "$engine" train --device "$device" --model "$model" --width "$width" --batch-size "$batch" --train-limit $((batch * 20)) --test-limit 0 \
  --epochs 3 --output "$out/engine-train.json"
# If the step failed, once more with the float4 kernels off (the newest unverified fast path), so the
# run still yields a step time and tells the two apart.
if grep -q '^engine-step *FAILED' "$summary"; then
  step engine-step-scalar env ENGINE_FLOAT4=0 "$engine" train --device "$device" --model "$model" --width "$width" --batch-size "$batch" \
    --train-limit $((batch * 20)) --test-limit 0 --epochs 3 --output "$out/engine-train.json"
fi
# Where the engine's step goes, kernel by kernel (CUDA events through ILGPU profiling markers).
step engine-profile "$engine" train --device "$device" --model "$model" --width "$width" --batch-size "$batch" --train-limit $((batch * 6)) --test-limit 0 \
  --epochs 2 --profile kernels --trace "$out/engine-trace.json"
if "$engine" bench --help 2>/dev/null | grep -q kernels; then
  step bench-kernels "$engine" bench kernels --device "$device" --model "$model" --width "$width" --batch-size "$batch" --json "$out/bench-kernels.json"
fi
step pytorch-step "${PYTHON:-python3}" bench/seed_train.py --model "$model" --width "$width" --batch-size "$batch" --steps 20 --warmup 5 --json "$out/pytorch.json"
# Last, if time is left: single vs dp vs ddp on this host (one GPU: two replicas share it, ddp over the
# host ring), with the report (tables, charts, traces). ResNet-18 at a quarter of the batch per replica.
cbatch=$(( batch / 4 > 0 ? batch / 4 : 1 ))
step compare "$engine" compare --device "$device" --model resnet18 --width "$width" --batch-size "$cbatch" --train-limit $((cbatch * 20)) \
  --test-limit 0 --epochs 2 --report "$out/compare-report" --output "$out/compare.json"

echo
echo "== gpu-check summary ($(date -u +%Y-%m-%dT%H:%MZ))"
cat "$summary"
"${PYTHON:-python3}" - "$out" "$model" "$batch" <<'PY'
import json, os, sys
out, model, batch = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    e = json.load(open(os.path.join(out, "engine-train.json")))
    steps = e["epochs"][-1]["steps"]
    eng = (e["mean_epoch_seconds_excluding_first"] or e["mean_epoch_seconds"]) / steps
    print(f"engine  {model} b{batch} step: {1000 * eng:8.2f} ms  (device {e['device']})")
except Exception as ex:
    eng = None
    print(f"engine step time unavailable: {ex}")
try:
    p = json.load(open(os.path.join(out, "pytorch.json")))
    pt = p["median_step_seconds"]
    print(f"pytorch {model} b{batch} step: {1000 * pt:8.2f} ms  (torch {p['torch']}, {p['device']}, tf32 conv {p['tf32_conv']})")
except Exception as ex:
    pt = None
    print(f"pytorch step time unavailable: {ex}")
if eng and pt:
    print(f"engine / pytorch step-time ratio: {eng / pt:.2f}")
PY
if [ -n "${ARCHIVE:-}" ]; then
  tar czf "$ARCHIVE" -C "$(dirname "$out")" "$(basename "$out")" && echo "archived $out to $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
fi
