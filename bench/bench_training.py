"""CPU training-speed benchmark: time a few batches of each default recipe, extrapolate to one epoch.

Usage: .venv/bin/python bench/bench_training.py [--batches 3] [--threads 1] [--batch-size B] [--json OUT]

The numbers are an extrapolation (measured batches x batches per epoch), not a full epoch; they depend on
how busy the machine is. GPU per-epoch times come from the model cards' training history.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

from workers.models import NormalizedModel, get_arch
from workers.models.evaluate import pgd_attack
from workers.models.train import DEFAULT_RECIPES, augment_batch, fgsm_rs_examples

TRAIN_SIZES = {"mnist": 60000, "cifar10": 50000}


def bench_recipe(name: str, batches: int, warmup: int = 1, batch_size: int | None = None) -> dict:
    cfg = DEFAULT_RECIPES[name]["config"]
    info = get_arch(cfg["arch"])
    torch.manual_seed(0)
    model = NormalizedModel(info.build(), info.mean, info.std).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    bs = batch_size or cfg["batch_size"]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(bs, *info.input_shape)
    y = torch.randint(0, 10, (bs,))
    times = []
    for i in range(warmup + batches):
        t = time.perf_counter()
        xb = augment_batch(x, gen) if cfg["dataset"] == "cifar10" else x
        if cfg["method"] == "pgd":
            xb = pgd_attack(model, xb, y, cfg["eps"], 2.5 * cfg["eps"] / cfg["pgd_steps"], cfg["pgd_steps"],
                            generator=gen)
        else:
            xb = fgsm_rs_examples(model, xb, y, cfg["eps"], cfg.get("fgsm_alpha", 1.25 * cfg["eps"]), gen)
        loss = F.cross_entropy(model(xb), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    per_batch = sum(times) / len(times)
    steps = (TRAIN_SIZES[cfg["dataset"]] - 1000) // bs
    return {
        "model": name, "arch": cfg["arch"], "method": cfg["method"], "batch_size": bs,
        "pgd_steps": cfg.get("pgd_steps"), "batches_timed": batches, "seconds_per_batch": round(per_batch, 3),
        "batches_per_epoch": steps, "extrapolated_seconds_per_epoch": round(per_batch * steps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_RECIPES))
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipes' batch size")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from tqdm import tqdm

    rows = [bench_recipe(m, args.batches, batch_size=args.batch_size) for m in tqdm(args.models, desc="recipes")]
    meta = {"device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "threads": args.threads, "torch": torch.__version__,
            "note": "extrapolated from a few timed batches (after one warm-up batch); excludes the per-epoch "
                    "held-out check; the machine was shared with other jobs"}
    result = {"meta": meta, "results": rows}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
