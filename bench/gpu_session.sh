#!/usr/bin/env bash
# One device call: train + evaluate the three default models (fp16 weights + JSON cards), then run
# bench/gpu_extra.sh if another engineer put one there.
#
# On the device machine (python3 with torch+CUDA; data copied into .device-data/ and carried):
#     PYTHONPATH=. bash bench/gpu_session.sh
# Locally, a CPU smoke run of exactly this script (tiny subsets, 3 batches per epoch):
#     PY=.venv/bin/python OUT=/tmp/gpu-smoke bash bench/gpu_session.sh --smoke
# Only some models, without gpu_extra.sh (e.g. a rerun of the MNIST models, about 4 minutes):
#     MODELS="mnist-default mnist-second" GPU_EXTRA=0 PYTHONPATH=. bash bench/gpu_session.sh
# Recipe overrides (JSON, per model): RECIPE_OVERRIDES='{"cifar10-default": {"epochs": 45, "budget": 170}}'
#
# Files written to $OUT (the tool brings back at most 8): session.log, summary.json, models.tar
# (<name>.pt fp16 weights and <name>.json cards); gpu_extra.sh writes its own files there too.
set -u
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
export PYTHONPATH=. PYTHONUNBUFFERED=1 SMOKE
PY=${PY:-python3}
export OUT=${OUT:-/tmp/lpstudy-gpu-out}
mkdir -p "$OUT"
export SRC=${LPSTUDY_DEVICE_DATA:-.device-data}
export STAGE=$(mktemp -d /tmp/lpstudy-stage.XXXXXX)
export CACHE=$(mktemp -d /tmp/lpstudy-data.XXXXXX)
DRIVER_TIMEOUT=${DRIVER_TIMEOUT:-425}
T0=$(date +%s)

{
echo "== gpu_session start $(date -u +%FT%TZ) smoke=$SMOKE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
ls -la "$SRC" "$SRC"/* 2>&1 | head -20

# The driver: one Python process (one CUDA init) trains the models one after the other; each model is
# packed, evaluated and carded before the next starts. CIFAR-10's JPEG tree is decoded into an npz cache by
# a background process while the MNIST models train.
timeout -k 10 "$DRIVER_TIMEOUT" "$PY" - <<'PYEOF'
import json, os, subprocess, sys, time, traceback
from pathlib import Path

t0 = time.time()
smoke = os.environ["SMOKE"] == "1"
src, stage, cache, out = (Path(os.environ[k]) for k in ("SRC", "STAGE", "CACHE", "OUT"))
(cache / "cifar10").mkdir(parents=True, exist_ok=True)
test_npz = src / "cifar10" / "cifar10_test_first1000.npz"
if test_npz.exists():
    os.symlink(test_npz.resolve(), cache / "cifar10" / test_npz.name)
PREP = (
    "import sys, time, numpy as np\n"
    "from workers.data import load_cifar10\n"
    "t = time.time(); x, y = load_cifar10(sys.argv[1], 'train', source='jpeg')\n"
    "np.savez(sys.argv[2] + '/cifar10/.tmp_train.npz', images=x, labels=y)\n"
    "import os; os.replace(sys.argv[2] + '/cifar10/.tmp_train.npz', sys.argv[2] + '/cifar10/cifar10_train.npz')\n"
    "print(f'cifar10 train cache: {len(y)} images decoded from JPEG in {time.time() - t:.1f}s', flush=True)\n"
)
prep = subprocess.Popen([sys.executable, "-c", PREP, str(src), str(cache)])

from workers.models.train import DEFAULT_RECIPES, train_default_model  # noqa: E402

device = "cpu" if smoke else "cuda"
notes = {
    "cifar10-default": "Training images: the 50,000 CIFAR-10 train images decoded from the JPEG class-per-folder "
    "tree (lossy, mean error 3-8/255); evaluation on the lossless official test images.",
}
# e.g. RECIPE_OVERRIDES='{"cifar10-default": {"epochs": 45, "budget": 170}}'
overrides = json.loads(os.environ.get("RECIPE_OVERRIDES") or "{}")
summary = {"smoke": smoke, "device": device, "models": {}, "overrides": overrides}
for name in os.environ.get("MODELS", "mnist-default mnist-second cifar10-default").split():
    data_dir = str(src)
    if name.startswith("cifar10"):
        rc = prep.wait()
        if rc == 0 and (cache / "cifar10" / "cifar10_train.npz").exists():
            data_dir = str(cache)
        else:
            print(f"cache preparation failed (rc {rc}); reading the JPEG tar directly", flush=True)
    t = time.time()
    try:
        ev = train_default_model(name, stage, data_dir=data_dir, device=device, smoke=smoke,
                                 progress=False, note=notes.get(name, ""), overrides=overrides.get(name))
        card = json.loads(Path(ev["card_path"]).read_text())
        hist = card["training"]["history"]
        summary["models"][name] = {
            "clean": ev["clean_accuracy"], "robust": ev["robust_accuracy"], "n": ev["n"],
            "attack": ev["attack"], "epochs": len(hist), "train_seconds": card["training"]["train_seconds"],
            "epoch_seconds": [h["seconds"] for h in hist], "wall_seconds": round(time.time() - t, 1),
        }
        print(f"== {name}: clean {ev['clean_accuracy']:.4f} robust {ev['robust_accuracy']:.4f} "
              f"({len(hist)} epochs, {time.time() - t:.0f}s)", flush=True)
    except Exception as exc:  # keep going: the other models still count
        traceback.print_exc()
        summary["models"][name] = {"error": repr(exc)}
    summary["elapsed_s"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2), flush=True)
PYEOF
echo "== driver rc=$? after $(( $(date +%s) - T0 ))s"

# whatever was staged comes back in one file (cards + fp16 weights, no full checkpoints)
( cd "$STAGE" && ls -la && tar -cf "$OUT/models.tar" --exclude='*.full.pt' . ) || echo "tar failed"
echo "== models.tar written after $(( $(date +%s) - T0 ))s"

# another engineer's CUDA timings, after our training
if [ -f bench/gpu_extra.sh ] && [ "$SMOKE" = 0 ] && [ "${GPU_EXTRA:-1}" = 1 ]; then
  echo "== running bench/gpu_extra.sh"
  timeout -k 5 "${EXTRA_T:-100}" bash bench/gpu_extra.sh
  echo "== gpu_extra rc=$?"
fi
echo "== gpu_session end after $(( $(date +%s) - T0 ))s"
} 2>&1 | tee "$OUT/session.log"
rm -rf "$STAGE" "$CACHE"
