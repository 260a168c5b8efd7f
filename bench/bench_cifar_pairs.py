"""CAI against CAP on the same CIFAR-10 images (L2 or L-inf study): success, energy (L2) and SSIM per pair.

    PYTHONPATH=. .venv/bin/python bench/bench_cifar_pairs.py --data-dir ../shared/data --norm linf --n 100 \
        [--threads 1] [--params '{"ssim_step": 0.1}'] [--label default] [--json out.json]

Both conditions run through ``workers.generation.make.generate`` on the same images (``choose_benign`` with ``--seed``),
so every figure is judged on the stored 8-bit image. Reported: images fooled per condition, mean (SD) L2 and
standard SSIM of the successes, the L2 ratio CAP / CAI, and on the pairs where both succeeded, how many have
SSIM(CAI) > SSIM(CAP). ``--params`` apply to both conditions (same algorithm, same parameters).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from workers.data.datasets import load_dataset
from workers.generation.make import choose_benign, generate
from workers.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--norm", choices=("l2", "linf"), required=True)
    ap.add_argument("--model", default="cifar10-default")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--label", default="")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, "cpu", data_dir=args.data_dir)
    images, labels = load_dataset("cifar10", args.data_dir, "test")
    labels = np.asarray(labels).astype(np.int64)
    idx = choose_benign(model, images, labels, args.n, args.seed, torch.device("cpu"))
    params = json.loads(args.params)
    res: dict[str, list[dict]] = {}
    secs: dict[str, float] = {}
    for c in ("CAI", "CAP"):
        t0 = time.perf_counter()
        res[c] = generate(
            "cifar10", args.norm, c, images[idx], labels[idx], idx, model, args.seed, "cpu", attack_params=params
        )
        secs[c] = (time.perf_counter() - t0) / len(idx)
    row: dict = {"norm": args.norm, "label": args.label, "params": params, "n": len(idx)}
    for c in ("CAI", "CAP"):
        ok = [r["metrics"] for r in res[c] if r["success"]]
        row[c] = {
            "fooled": len(ok),
            "mean_l2": round(statistics.mean(m["l2"] for m in ok), 4) if ok else None,
            "sd_l2": round(statistics.stdev(m["l2"] for m in ok), 4) if len(ok) > 1 else None,
            "mean_ssim": round(statistics.mean(m["ssim"] for m in ok), 4) if ok else None,
            "max_linf": round(max(m["linf"] for m in ok), 4) if ok else None,
            "s_per_image": round(secs[c], 3),
        }
    both = [
        (a["metrics"], b["metrics"])
        for a, b in zip(res["CAI"], res["CAP"], strict=True)
        if a["success"] and b["success"]
    ]
    row["pairs_both_fooled"] = len(both)
    row["pairs_cai_ssim_higher"] = sum(a["ssim"] > b["ssim"] for a, b in both)
    if row["CAI"]["mean_l2"] and row["CAP"]["mean_l2"]:
        row["l2_ratio_cap_over_cai"] = round(row["CAP"]["mean_l2"] / row["CAI"]["mean_l2"], 4)
    print(json.dumps(row), flush=True)  # noqa: T201
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
