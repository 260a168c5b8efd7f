"""Measure L0 CAI (the study default, or --attack jsma) on 75 MNIST test images and record it in a model's card.

    .venv/bin/python bench/card_l0.py mnist-default --data-dir ../shared/data [--n 75] [--attack jsma] [--write]

Success and L0 are judged on the stored 8-bit image, exactly as the stimulus engine does
(workers.generation.make.generate). For comparison, the paper reports 68/75 at a mean of 4.90% of pixels (SD 2.91)
against Madry et al.'s robust MNIST model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time

import numpy as np
import torch

from workers.data.datasets import load_mnist
from workers.generation.make import choose_benign, generate
from workers.models import load_model
from workers.models.defaults import DEFAULT_MODELS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="a default model name, e.g. mnist-default")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--n", type=int, default=75)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attack", default=None, help="an L0 CAI attack by name (default: the study default)")
    ap.add_argument("--write", action="store_true", help="store the result in the model's card")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = load_model(args.model, "cpu", data_dir=args.data_dir)
    images, labels = load_mnist(args.data_dir, "test")
    idx = choose_benign(model, images, labels.astype(np.int64), args.n, args.seed, torch.device("cpu"))
    t = time.perf_counter()
    res = generate("mnist", "l0", "CAI", images[idx], labels[idx], idx, model, args.seed, "cpu", attack=args.attack)
    secs = time.perf_counter() - t
    ok = [r for r in res if r["success"]]
    fr = [r["metrics"]["l0_frac"] for r in ok]
    params = json.loads(ok[0]["metrics"]["params"]) if ok else {}
    result = {
        "attack": res[0]["metrics"]["attack"],
        "params": params,
        "images": len(res),
        "successes": len(ok),
        "mean_l0_fraction": round(statistics.mean(fr), 5) if fr else None,
        "sd_l0_fraction": round(statistics.stdev(fr), 5) if len(fr) > 1 else None,
        "seconds_per_image_cpu_wall": round(secs / len(res), 3),
        "seed": args.seed,
        "judged_on": "the rounded 8-bit image",
        "paper_reference": "68/75 at a mean L0 of 4.90% (SD 2.91%) against Madry et al.'s MNIST model",
        "date": dt.date.today().isoformat(),
    }
    print(json.dumps(result, indent=2))
    if args.write:
        card_path = DEFAULT_MODELS[args.model].card_path(args.data_dir)
        card = json.loads(card_path.read_text())
        card.setdefault("evaluation", {})["l0_cai"] = result
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"written to {card_path}")


if __name__ == "__main__":
    main()
