#!/bin/bash
# The CUDA backend's check on a GPU machine (one H100/H200 with nvcc, CMake and PyTorch, none of
# scion's other packages), sized for one call of at most 6 minutes. Prepare it here with
# experiments/gpu/pack.sh (binaries, libraries, a small CIFAR-10), carry `.gpu`, then run from the
# repository root:  experiments/gpu/verify.sh [.gpu]
# Steps (each with its own time limit, its result in the table written last):
#   1. scion info lists the GPU
#   2. scion_tests "[cuda]": every backend op cuda vs cpu forward and backward in f32, bf16, f64;
#      random fills, AdamW/SGD and exact GELU bit for bit; vit_tiny and convnext_femto logits and
#      gradients; asynchronous host-to-device copies; a one-rank NCCL communicator and gradient
#      reducer
#   3. compute-sanitizer memcheck on a subset (fills, optimizer, the mma.sync fused attention, the
#      layer norm and layer scale row kernels)
#   4. 200 training steps of the ConvNeXt-F mini config (f32) on cuda and on cpu: loss curves;
#      scion eval of the weights on both; a weight-selected, distilled half-width student on both
#   5. throughput and peak memory against PyTorch (eager AMP, then torch.compile while time is
#      left) for ViT-T 224 px b256, ViT-T 32 px b512, ConvNeXt-F 224 px b256 (and ViT-T 224 px
#      b64, the paper's batch per GPU): full AdamW steps, with the host's time per step;
#      scion's GPU time per kernel kind, and per kind and operand shapes, for each case
#      (profile_*.txt); ViT-T 224 px again on the WMMA attention kernels (SCION_CUDA_FLASH=wmma)
#      and ConvNeXt-F 224 px on run 8's layer norm and layer scale kernels (SCION_CUDA_NORM=warp)
# Output: gpu-verify/verify.md and the logs beside it; with $OUT set (the device tool), verify.md
# and logs.tgz there.
set -u
T0=$(date +%s)
PACK=${1:-.gpu}
R=$PWD/gpu-verify
rm -rf "$R" && mkdir -p "$R"
W=/tmp/scion-gpu
rm -rf "$W" && mkdir -p "$W"
tar -xJf "$PACK/pack.tar.xz" -C "$W"
# cuDNN, cuBLAS(Lt) and NCCL come from PyTorch's wheels there (folders holding libcudnn.so.9,
# libcublasLt.so.13 and libnccl.so.2), then the toolkit's. Only scion's binaries get this library path (through
# the wrapper $SC): PyTorch keeps its own.
LIBS=$(python3 - <<'PY'
import glob, os
dirs = []
try:
    import nvidia
    for root in nvidia.__path__:
        for name in ("libcudnn.so.9", "libcublasLt.so.13", "libcublas.so.13", "libnccl.so.2"):
            for hit in glob.glob(os.path.join(root, "**", name), recursive=True):
                d = os.path.dirname(hit)
                if d not in dirs:
                    dirs.append(d)
except ImportError:
    pass
print(":".join(dirs + ["/usr/local/cuda/lib64"]))
PY
)
SC=$W/sc
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "$@"\n' "$W/lib:$LIBS" > "$SC"
chmod +x "$SC"
export PYTHONUNBUFFERED=1
B=$W/bin
TABLE=()
elapsed() { echo $(($(date +%s) - T0)); }
# The table so far, with the logs, in $R and (with $OUT set) in $OUT, after every step: a call cut
# off by the device tool's limit (killed, so no trap would run) still brings back what it did.
checkpoint() {
  {
    echo "# experiments/gpu/verify.sh on $(head -1 "$R/gpu.txt"): partial, $(elapsed) s so far"
    echo
    echo "| step | result | time |"
    echo "| --- | --- | --- |"
    printf '%s\n' "${TABLE[@]}"
  } > "$R/verify.md"
  if [ -n "${OUT:-}" ]; then
    cp "$R/verify.md" "$OUT/"
    tar -czf "$OUT/logs.tgz" -C "$R" .
  fi
}
# step NAME LIMIT_SECONDS COMMAND...: runs it, logs to $R/NAME.log, records pass/fail and time.
step() {
  local name=$1 limit=$2
  shift 2
  local s=$(date +%s)
  timeout "$limit" "$@" > "$R/$name.log" 2>&1
  local rc=$? t=$(($(date +%s) - s))
  LAST_RC=$rc
  local res=PASS
  [ $rc -ne 0 ] && res="FAIL (exit $rc)"
  [ $rc -eq 124 ] && res="TIMEOUT (${limit} s)"
  TABLE+=("| $name | $res | $t s |")
  echo "== $name: $res in $t s"
  tail -n 15 "$R/$name.log"
  checkpoint
}
nvidia-smi -L | tee "$R/gpu.txt"
python3 -m pip list 2>/dev/null | grep -i "nvidia-cudnn\|nvidia-cublas\|^torch \|^timm " >> "$R/gpu.txt"
echo "library path for scion: $W/lib:$LIBS" >> "$R/gpu.txt"
step info 30 "$SC" "$B/scion" info
# A [cuda] test that finds no GPU skips with a line saying so: here that is a failure.
cuda_step() {
  step "$@"
  if grep -q "SKIPPED \[cuda\]" "$R/$1.log"; then
    TABLE[-1]="| $1 | FAIL (skipped: no GPU seen) | - |"
    checkpoint
  fi
}
cuda_step cuda_ops 120 env CUDA_LAUNCH_BLOCKING=1 "$SC" "$B/scion_tests" "backend ops: cuda matches cpu*" --durations yes
# A pair of kernel sets on their own (cuda_ops runs the defaults): when only the default set ($2,
# its test $3) fails and the alternative ($4, test $5) passes, every step below runs the
# alternative ($6 set to $7 in the environment), and the table says so.
kernel_sets() {
  local what=$1 default=$2 default_test=$3 alt=$4 alt_test=$5 var=$6 value=$7
  cuda_step "$default" 60 env CUDA_LAUNCH_BLOCKING=1 "$SC" "$B/scion_tests" "$default_test"
  local default_rc=$LAST_RC
  cuda_step "$alt" 60 env CUDA_LAUNCH_BLOCKING=1 "$SC" "$B/scion_tests" "$alt_test"
  if [ "$default_rc" -ne 0 ] && [ "$LAST_RC" -eq 0 ]; then
    export "$var=$value"
    TABLE+=("| $what fallback | the default $what kernels failed: every step below runs the others ($var=$value) | - |")
    checkpoint
  fi
}
# The fused attention: the mma.sync kernels (the default) or the WMMA ones of runs 7 and 8.
kernel_sets attention flash_mma "backend ops: cuda matches cpu: fused attention on mma.sync kernels" \
  flash_wmma "backend ops: cuda matches cpu: fused attention on WMMA kernels" SCION_CUDA_FLASH wmma
# The layer norm and layer scale: the row kernels (the default) or run 8's (a warp per layer norm
# row, mul and add kernels for the layer scale).
kernel_sets "layer norm and layer scale" norm_rows "backend ops: cuda matches cpu: row kernels for layer norm and layer scale" \
  norm_warp "backend ops: cuda matches cpu: run 8 kernels for layer norm and layer scale" SCION_CUDA_NORM warp
cuda_step cuda_fills 20 env CUDA_LAUNCH_BLOCKING=1 "$SC" "$B/scion_tests" "backend ops: cuda fills*" --durations yes
cuda_step cuda_models 60 "$SC" "$B/scion_tests" "cuda: vit_tiny and convnext_femto*" --durations yes
cuda_step cuda_copies 60 "$SC" "$B/scion_tests" "cuda: asynchronous*" --durations yes
cuda_step nccl 60 "$SC" "$B/scion_tests" "nccl: one-rank*" --durations yes
step sanitizer 60 "$SC" compute-sanitizer --tool memcheck --error-exitcode 3 "$B/scion_tests" \
  "backend ops: cuda fills*"
step sanitizer_attention 60 "$SC" compute-sanitizer --tool memcheck --error-exitcode 3 \
  "$B/scion_tests" "backend ops: cuda matches cpu: fused attention on mma.sync kernels"
step sanitizer_norm 60 "$SC" compute-sanitizer --tool memcheck --error-exitcode 3 \
  "$B/scion_tests" "backend ops: cuda matches cpu: row kernels for layer norm and layer scale"
TRAIN_SETS=(--set model.drop_path=0 --set data.root="$W/cifar10" --set data.workers=4
            --set train.epochs=${VERIFY_EPOCHS:-10} --set train.precision=f32 --set seed=0)
step train_cuda 60 "$SC" "$B/train" --config configs/mini/convnext_femto_cifar10.yaml "${TRAIN_SETS[@]}" \
  --set device=cuda --output-dir "$W/train_cuda"
step train_cpu 90 "$SC" "$B/train" --config configs/mini/convnext_femto_cifar10.yaml "${TRAIN_SETS[@]}" \
  --set device=cpu --set threads=16 --output-dir "$W/train_cpu"
step loss_curves 20 python3 experiments/gpu/compare_curves.py "$W/train_cuda/metrics.jsonl" \
  "$W/train_cpu/metrics.jsonl"
# scion eval on the GPU reproduces the CPU's evaluation of the same weights; a half-width student
# selected from the trained model (weight selection) and distilled from it trains on the GPU as on
# the CPU (2 epochs each).
EVAL=(eval --weights "$W/train_cpu/best.safetensors" --data image_folder --root "$W/cifar10"
      --split test --precision f32)
step eval_cuda 30 "$SC" "$B/scion" "${EVAL[@]}" --device cuda
step eval_cpu 30 "$SC" "$B/scion" "${EVAL[@]}" --device cpu
step eval_same 5 python3 -c "import re,sys; a,b=(re.findall(r'\"acc1\": *([0-9.eE+-]+)',open(f).read()) for f in sys.argv[1:]); print(a,b); sys.exit(0 if a and a==b else 1)" "$R/eval_cuda.log" "$R/eval_cpu.log"
WS_SETS=(--set model.dims=[24,48,96,192] --set init.type=weight_selection
         --set init.teacher="$W/train_cpu/best.safetensors" --set init.teacher_model=convnext_femto
         --set train.distill.teacher="$W/train_cpu/best.safetensors" --set train.distill.model=convnext_femto
         --set train.distill.alpha=0.5
         --set train.epochs=2 --set model.drop_path=0 --set data.root="$W/cifar10"
         --set train.precision=f32 --set seed=0)
step ws_kd_cuda 60 "$SC" "$B/train" --config configs/mini/convnext_femto_cifar10.yaml "${WS_SETS[@]}" \
  --set device=cuda --output-dir "$W/ws_cuda"
step ws_kd_cpu 90 "$SC" "$B/train" --config configs/mini/convnext_femto_cifar10.yaml "${WS_SETS[@]}" \
  --set device=cpu --set threads=16 --output-dir "$W/ws_cpu"
step ws_kd_curves 20 python3 experiments/gpu/compare_curves.py "$W/ws_cuda/metrics.jsonl" \
  "$W/ws_cpu/metrics.jsonl"
BENCH=("vit_tiny 224 256 --set img_size=224" "vit_tiny 32 512 --set img_size=32 --set patch_size=4"
       "convnext_femto 224 256 --set img_size=224")
# The paper's ViT-T recipe runs 64 images per GPU (configs/vit_t_cifar100_wsel.yaml): a step that
# small shows whether the host (host_ms) or the GPU sets the pace.
: > "$R/bench_scion.jsonl"
for c in "${BENCH[@]}" "vit_tiny 224 64 --set img_size=224"; do
  read -r model px batch rest <<< "$c"
  timeout 40 "$SC" "$B/bench_models" --model "$model" $rest --batch "$batch" --precision bf16 --step \
    --device cuda --steps 20 --warmup 5 >> "$R/bench_scion.jsonl" 2>> "$R/bench_scion.err"
done
TABLE+=("| bench_scion | $(wc -l < "$R/bench_scion.jsonl") of 4 cases | - |")
checkpoint
# The same ViT-T 224 px step on the WMMA attention kernels of runs 7 and 8 (SCION_CUDA_FLASH=wmma),
# against the default mma.sync ones above.
SCION_CUDA_FLASH=wmma timeout 40 "$SC" "$B/bench_models" --model vit_tiny --set img_size=224 --batch 256 \
  --precision bf16 --step --device cuda --steps 20 --warmup 5 > "$R/bench_scion_wmma.jsonl" \
  2>> "$R/bench_scion.err"
# The same ConvNeXt-F 224 px step on run 8's layer norm and layer scale kernels
# (SCION_CUDA_NORM=warp), against the default row kernels above.
SCION_CUDA_NORM=warp timeout 40 "$SC" "$B/bench_models" --model convnext_femto --set img_size=224 \
  --batch 256 --precision bf16 --step --device cuda --steps 20 --warmup 5 \
  > "$R/bench_scion_norm_warp.jsonl" 2>> "$R/bench_scion.err"
# Where scion's step time goes: GPU time per kernel kind, then per kind and operand shapes
# (SCION_CUDA_OP_TIMES=shapes).
for c in "${BENCH[@]}"; do
  read -r model px batch rest <<< "$c"
  SCION_CUDA_OP_TIMES=shapes timeout 40 "$SC" "$B/bench_models" --model "$model" $rest --batch "$batch" \
    --precision bf16 --step --device cuda --steps 20 --warmup 3 > /dev/null 2> "$R/profile_${model}_${px}.txt"
done
TABLE+=("| profiles | $(grep -l "GPU time per kernel kind" "$R"/profile_*.txt 2> /dev/null | wc -l) of 3 | - |")
checkpoint
LEFT=$((330 - $(elapsed)))
[ -n "${VERIFY_SKIP_TORCH:-}" ] && LEFT=0  # a rerun that needs only scion's numbers
[ "$LEFT" -gt 0 ] && timeout $((LEFT > 30 ? LEFT : 30)) python3 experiments/gpu/bench_torch.py --budget "$LEFT" \
  > "$R/bench_torch.jsonl" 2> "$R/bench_torch.err"
TABLE+=("| bench_torch | $(cat "$R/bench_torch.jsonl" 2> /dev/null | wc -l) results | - |")
{
  echo "# experiments/gpu/verify.sh on $(head -1 "$R/gpu.txt")"
  echo
  echo "| step | result | time |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${TABLE[@]}"
  echo
  python3 experiments/gpu/throughput_table.py "$R/bench_scion.jsonl" "$R/bench_torch.jsonl"
  echo
  python3 - "$R/bench_scion.jsonl" "$R/bench_scion_wmma.jsonl" "$R/bench_scion_norm_warp.jsonl" <<'PY'
import json, os, sys
rows = [[json.loads(l) for l in open(f) if l.strip()] if os.path.exists(f) else []
        for f in sys.argv[1:]]
# (model, px, the alternative's rows, its environment variable and value, the two kernels' names)
for model, px, alt, var, value, names in [
        ("vit_tiny", 224, rows[1], "SCION_CUDA_FLASH", "wmma", ("mma.sync", "WMMA attention")),
        ("convnext_femto", 224, rows[2], "SCION_CUDA_NORM", "warp", ("row", "run-8 layer norm and layer scale"))]:
    case = f"{model} {px} px b256"
    base = [r for r in rows[0] if r["model"] == model and r["img_size"] == px and r["batch"] == 256]
    if os.environ.get(var) == value:
        print(f"{case}: every benchmark ran on the {names[1]} kernels ({var}={value})")
    elif base and alt:
        a, b = base[0]["images_per_second"], alt[0]["images_per_second"]
        print(f"{case}: {names[0]} kernels {a:.0f} img/s, {names[1]} kernels {b:.0f} img/s "
              f"({names[0]} / {names[1].split()[0]} {a / b:.2f})")
    else:
        print(f"{case} on the {names[1]} kernels: no result")
PY
  echo
  echo "total $(elapsed) s"
} > "$R/verify.md"
cat "$R/verify.md"
if [ -n "${OUT:-}" ]; then
  cp "$R/verify.md" "$OUT/"
  tar -czf "$OUT/logs.tgz" -C "$R" .
fi
