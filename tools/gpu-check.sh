#!/usr/bin/env bash
# The one prepared command for a GPU host (no .NET SDK there: it runs the published single-file `engine`).
# It fits a fixed window: at most MINUTES (default and ceiling 7) in all, and every step runs under its own
# bound (`timeout -k`), so a slow or hung step costs its share, not the rest of the run. The order puts first
# what a window must not miss: every kernel loaded and checked on the device (first minute), a training step,
# NCCL on the engine's buffers, the PyTorch baseline; then the rest while time is left. Each step is independent
# of the last one's success; logs and JSON go to OUT_DIR and a short table is printed last.
#   usage: tools/gpu-check.sh [OUT_DIR] [MINUTES]      (ENGINE=path/to/engine, default ./publish/engine)
# ARCHIVE=file.tar.gz packs OUT_DIR into that one file at the end (for hosts that hand back few files).
# Rehearsal on the simulated GPU (docs/GPU.md): source ../shared/gpusim/env.sh first, then
#   DEVICE=cuda MODEL=resnet18 WIDTH=2 BATCH=8 STEPS=1 EPOCHS=1 NCCL_SIZES=4K,64K SLOWDOWN=16 ENGINE_NCCL_PATH=$PWD/native/build/fake-nccl \
#     ENGINE=$PWD/src/Runner/bin/Release/net10.0/engine bash tools/gpu-check.sh /tmp/gpu-rehearsal
# (GPUSIM_CONFIG_DIR set: the steps run from a folder holding the simulator's configuration). SLOWDOWN multiplies
# every bound and the total, for a device slower than the card the window is planned for; a GPU run leaves it at 1.
set -u
cd "$(dirname "$0")/.."
out=${1:-gpu-out}
minutes=${2:-7}
[ "$minutes" -gt 7 ] 2>/dev/null && minutes=7
engine=${ENGINE:-./publish/engine}
device=${DEVICE:-cuda}
model=${MODEL:-resnet34}
width=${WIDTH:-64}
batch=${BATCH:-512}
nccl_sizes=${NCCL_SIZES:-4K,1M,64M}
steps=${STEPS:-10}    # training steps per epoch of engine-step (engine-profile runs 4)
epochs=${EPOCHS:-3}   # epochs of engine-step; the first pays for kernel compilation
python=${PYTHON:-python3}
slowdown=${SLOWDOWN:-1}
mkdir -p "$out"
out=$(cd "$out" && pwd)
case "$engine" in /*) ;; *) engine=$PWD/$engine ;; esac
repo=$PWD
deadline=$(( $(date +%s) + minutes * 60 * slowdown ))
summary="$out/summary.txt"
: > "$summary"

line() { printf '%-16s %s\n' "$1" "$2" | tee -a "$summary"; }

# The published engine first: without it every step would fail, each after its own wait.
if [ ! -x "$engine" ]; then
  line engine "MISSING: $engine is not an executable file (dotnet pwsh ./build.ps1 publish, or set ENGINE)"
  exit 2
fi

# Where the steps run: here, or on the simulated GPU a folder with its configuration (GPGPU-Sim reads
# ./gpgpusim.config from the current directory and ends the process without it).
run_dir=$repo
if [ -n "${GPUSIM_CONFIG_DIR:-}" ]; then
  run_dir="$out/gpusim-cwd"
  mkdir -p "$run_dir" && cp -f "$GPUSIM_CONFIG_DIR"/* "$run_dir/"
fi

# step NAME SECONDS COMMAND...: runs COMMAND under its own bound (SECONDS, or less if the run's deadline is
# nearer), SIGTERM at the bound and SIGKILL 5 s later; logs to OUT_DIR/NAME.log and adds a summary line.
step() {
  local name=$1 share=$(( $2 * slowdown )); shift 2
  local left=$(( deadline - $(date +%s) - 5 ))
  if [ "$left" -lt 10 ]; then
    line "$name" "SKIPPED (the run's $(( minutes * slowdown ))-minute bound is reached)"
    return
  fi
  local bound=$(( share < left ? share : left ))
  local t0
  t0=$(date +%s)
  echo "==> $name (bound ${bound} s): $*"
  (cd "$run_dir" && timeout -k 5 "$bound" "$@") > "$out/$name.log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  tail -n 15 "$out/$name.log"
  if [ "$rc" -eq 0 ]; then
    line "$name" "$(printf 'ok      %4d s  %s' "$secs" "$out/$name.log")"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    line "$name" "$(printf 'TIMEOUT %4d s  bound %d s  %s' "$secs" "$bound" "$out/$name.log")"
  else
    line "$name" "$(printf 'FAILED  %4d s  rc %d  %s' "$secs" "$rc" "$out/$name.log")"
  fi
}
failed() { grep -qE "^$1 +(FAILED|TIMEOUT)" "$summary"; }

# Every kernel loaded on the device and checked against its float64 reference, at small shapes: the first minute.
step kernels 60 "$engine" check kernels --device "$device" --seed 1234
# The engine moves ILGPU's accelerator into the device's primary context (for NCCL). If the driver refused
# that (the error names ENGINE_CUDA_CONTEXT), keep ILGPU's own context for every later step and say so.
if failed kernels && grep -q 'ENGINE_CUDA_CONTEXT' "$out/kernels.log"; then
  export ENGINE_CUDA_CONTEXT=own
  line note "primary context refused: ENGINE_CUDA_CONTEXT=own for the rest of the run (NCCL will not see the engine's buffers)"
  step kernels-own-context 45 "$engine" check kernels --device "$device" --seed 1234
fi
# The training step: EPOCHS epochs of STEPS steps.
step engine-step 100 "$engine" train --device "$device" --model "$model" --width "$width" --batch-size "$batch" \
  --train-limit $((batch * steps)) --test-limit 0 --epochs "$epochs" --output "$out/engine-train.json"
# NCCL on ILGPU buffers: its self-check prints the CUDA context current before and after init and the stream's and a
# buffer's contexts (all must be the primary context), then one-rank all-reduces. NCCL_DEBUG=WARN explains a refusal.
step nccl 45 env NCCL_DEBUG=WARN "$engine" bench allreduce --backend nccl --nproc 1 --sizes "$nccl_sizes" --timeout 20
# The seed's loop in PyTorch on the same card, if this Python has torch.
if "$python" -c 'import torch' > /dev/null 2>&1; then
  step pytorch-step 75 "$python" "$repo/bench/seed_train.py" --model "$model" --width "$width" --batch-size "$batch" --steps 20 --warmup 5 \
    --json "$out/pytorch.json"
else
  line pytorch-step "SKIPPED (no torch for $python: set PYTHON to an interpreter that has it)"
fi

# ---- the rest, while time is left ----
step devices 20 "$engine" devices
command -v nvidia-smi > /dev/null && step gpu 15 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
# If the step failed, once more with the float4 kernels off (the newest unverified fast path).
if failed engine-step; then
  step engine-step-scalar 60 env ENGINE_FLOAT4=0 "$engine" train --device "$device" --model "$model" --width "$width" --batch-size "$batch" \
    --train-limit $((batch * steps)) --test-limit 0 --epochs "$epochs" --output "$out/engine-train.json"
fi
# Every kernel again at ResNet-sized shapes: a real card's job (on the simulated GPU it takes far longer than any window).
if [ -n "${GPUSIM_CONFIG_DIR:-}" ]; then
  line kernels-large "SKIPPED on the simulated GPU (ResNet-sized shapes take it far longer than any window)"
else
  step kernels-large 60 "$engine" check kernels --device "$device" --large --seed 1234
fi
# Where the engine's step goes, kernel by kernel (CUDA events through ILGPU profiling markers).
step engine-profile 45 "$engine" train --device "$device" --model "$model" --width "$width" --batch-size "$batch" --train-limit $((batch * (steps < 4 ? steps : 4))) \
  --test-limit 0 --epochs 1 --profile kernels --trace "$out/engine-trace.json"
# Single vs dp vs ddp on this host (one GPU: two replicas share it, ddp over the host ring), with the report.
# Four training runs: on the simulated GPU, far longer than any window.
cbatch=$(( batch / 4 > 0 ? batch / 4 : 1 ))
if [ -n "${GPUSIM_CONFIG_DIR:-}" ]; then
  line compare "SKIPPED on the simulated GPU (single, dp and ddp runs take it far longer than any window)"
else
  step compare 60 "$engine" compare --device "$device" --model resnet18 --width "$width" --batch-size "$cbatch" --train-limit $((cbatch * steps)) \
    --test-limit 0 --epochs "$(( epochs < 2 ? epochs : 2 ))" --report "$out/compare-report" --output "$out/compare.json"
fi

echo
echo "== gpu-check summary ($(date -u +%Y-%m-%dT%H:%MZ))"
cat "$summary"
timeout -k 2 20 "$python" - "$out" "$model" "$batch" <<'PY'
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
grep -qE ' (FAILED|TIMEOUT|MISSING)' "$summary" && exit 1
exit 0
