#!/usr/bin/env bash
# CUDA timings of the stimulus engine, run by bench/gpu_session.sh after training (with `timeout 100`).
#
#   on the device:  PYTHONPATH=. bash bench/gpu_extra.sh          (OUT, SRC, STAGE set by gpu_session.sh)
#   local smoke:    PY=.venv/bin/python OUT=/tmp/gx SRC=../shared/data DEVICE=cpu N_L0=4 N_CIFAR=2 bash bench/gpu_extra.sh
#
# Models: the freshly trained defaults in $STAGE (mnist-default, mnist-second as the L0 CAP judge,
# cifar10-default) when they are there, else random initialisations of their architectures (timing only).
# Writes at most two small files: $OUT/gpu_extra.md (the tables) and $OUT/gpu_extra.json (raw summaries).
set -u
PY=${PY:-python3}
OUT=${OUT:-/tmp/lpstudy-gpu-out}
SRC=${SRC:-${LPSTUDY_DEVICE_DATA:-.device-data}}
STAGE=${STAGE:-/nonexistent}
DEVICE=${DEVICE:-cuda}
N_L0=${N_L0:-75}
N_CIFAR=${N_CIFAR:-16}
export PYTHONPATH=${PYTHONPATH:-.} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
pick() { if [ -f "$STAGE/$1.pt" ]; then echo "$STAGE/$1.pt"; elif [ -f "workers/models/weights/$1.pt" ]; then echo "workers/models/weights/$1.pt"; else echo "random:$2"; fi; }
MNIST=$(pick mnist-default madry_mnist)
JUDGE=$(pick mnist-second cw_mnist)
CIFAR=$(pick cifar10-default preact_resnet18_w32)
# JSMA timing model: the reference robust model when the data folder carries it (a real, non-trivial model),
# else lpstudy's mnist-default.
JSMA_MODEL=$MNIST; JSMA_ARCH=""
if [ -f "$SRC/models/mnist_lenet5_advtrained.pt" ]; then
  JSMA_MODEL="$SRC/models/mnist_lenet5_advtrained.pt"; JSMA_ARCH=lenet5_advertorch
fi
echo "gpu_extra: device=$DEVICE mnist=$MNIST judge=$JUDGE cifar=$CIFAR data=$SRC"
# 1) JSMA in both modes on N_L0 MNIST images, plus the whole L0 set (CB + JSMA all + automated CAP).
timeout -k 3 "${JSMA_T:-40}" "$PY" - "$JSMA_MODEL" "$SRC" "$DEVICE" "$N_L0" "$OUT/gpu_extra.md" "$JSMA_ARCH" <<'PYEOF'
import sys, time, torch
sys.path.insert(0, "bench")
from bench_stimuli import load
from bench_jsma import pick_images, score
from workers.attacks.jsma import jsma, random_targets
spec, src, device, n, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
arch = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None
dev = torch.device(device)
model = load(spec, dev, arch)
x, y = pick_images(model, src, n, 0)
x, y = x.to(dev), y.to(dev)
lines = [f"JSMA on {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
         f"model {getattr(model, 'model_id', spec)}, {len(y)} MNIST test images", "",
         "| mode | success | mean L0 (SD) | s / image |", "|---|---|---|---|"]
jsma(model, x[:2], y[:2], mode="all")  # warm-up (CUDA context, kernels)
for mode in ("random", "all"):
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    t_ = random_targets(y, 10, torch.Generator().manual_seed(0)) if mode == "random" else None
    r = jsma(model, x, y, mode=mode, targets=t_)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t) / len(y)
    ok, l0, sd = score(model, x, y, r.adv_u8.float() / 255)
    lines.append(f"| {mode} | {ok}/{len(y)} | {l0:.2%} ({sd:.2%}) | {sec:.4f} |")
    open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines), flush=True)
PYEOF
echo "jsma rc=$?"
# 2) Whole stimulus sets: L2 and L-inf (N_CIFAR images each), then L0 (N_L0 images); the table is appended to
#    gpu_extra.md after every study, so a time-out keeps what was done.
cp "$OUT/gpu_extra.md" /tmp/gpu_extra_jsma.md 2>/dev/null || echo "(no JSMA table)" > /tmp/gpu_extra_jsma.md
printf '\nStimulus sets on %s (CB + CAI + CAP, make_stimuli):\n' "$DEVICE" >> /tmp/gpu_extra_jsma.md
timeout -k 3 "${SETS_T:-50}" "$PY" bench/bench_stimuli.py --data-dir "$SRC" --device "$DEVICE" --studies l2,linf,l0 \
  --n-l0 "$N_L0" --n-cifar "$N_CIFAR" --mnist-model "$MNIST" --judge "$JUDGE" --cifar-model "$CIFAR" \
  --out "$OUT/gpu_extra.md" --json "$OUT/gpu_extra.json" --prefix-file /tmp/gpu_extra_jsma.md
echo "sets rc=$?"
cat "$OUT/gpu_extra.md"
