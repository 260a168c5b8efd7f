"""L0 CAI attacks side by side on one model and the same images: JSMA (cleverhans 2.1) and the exact search.

    PYTHONPATH=. .venv/bin/python bench/bench_l0_cai.py --data-dir ../shared/data --n 75 --threads 1 \
        [--model mnist-default] [--attacks jsma,l0_search] [--json out.json]

Each attack runs through ``workers.generation.make.generate`` (the path the worker and ``lpstudy stimuli make``
take), so success and L0 are judged on the stored 8-bit image. Images: ``choose_benign`` with ``--seed`` (correctly
classified MNIST test images). Seconds per image are wall time and CPU time of this process; the CPU is shared,
so compare only rows of the same run. The paper: 68/75 at a mean L0 of 4.90% (SD 2.91%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from workers.data.datasets import load_mnist
from workers.generation.make import choose_benign, generate
from workers.models import load_model


def run(attack: str, params: dict, model, images, labels, idx, seed: int) -> dict:  # type: ignore[no-untyped-def]
    c0, w0 = time.process_time(), time.perf_counter()
    rows = generate(
        "mnist", "l0", "CAI", images[idx], labels[idx], idx, model, seed, "cpu", attack=attack, attack_params=params
    )
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    ok = [r for r in rows if r["success"]]
    fr = [100 * r["metrics"]["l0_frac"] for r in ok]
    return {
        "attack": attack,
        "params": json.loads(rows[0]["metrics"]["params"]),
        "images": len(rows),
        "fooled": len(ok),
        "mean_l0_pct": round(statistics.mean(fr), 3) if fr else None,
        "sd_l0_pct": round(statistics.stdev(fr), 3) if len(fr) > 1 else None,
        "median_l0_px": statistics.median(r["metrics"]["l0"] for r in ok) if ok else None,
        "max_l0_pct": round(max(fr), 3) if fr else None,
        "wall_s_per_image": round(wall / len(rows), 3),
        "cpu_s_per_image": round(cpu / len(rows), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default="mnist-default")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attacks", default="jsma,l0_search")
    ap.add_argument("--params", default="{}", help='JSON: {"attack": {param: value}} overrides')
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, "cpu", data_dir=args.data_dir)
    images, labels = load_mnist(args.data_dir, "test")
    labels = labels.astype(np.int64)
    idx = choose_benign(model, images, labels, args.n, args.seed, torch.device("cpu"))
    overrides = json.loads(args.params)
    out = []
    for attack in args.attacks.split(","):
        row = run(attack, overrides.get(attack, {}), model, images, labels, idx, args.seed)
        out.append(row)
        print(json.dumps(row), flush=True)  # noqa: T201
    print("| attack | fooled | mean L0 (SD) | median px | max L0 | wall s/img | CPU s/img |")  # noqa: T201
    print("|---|---|---|---|---|---|---|")  # noqa: T201
    for r in out:
        print(  # noqa: T201
            f"| `{r['attack']}` | {r['fooled']}/{r['images']} | {r['mean_l0_pct']}% ({r['sd_l0_pct']}%) | "
            f"{r['median_l0_px']} | {r['max_l0_pct']}% | {r['wall_s_per_image']} | {r['cpu_s_per_image']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "n": args.n, "seed": args.seed, "rows": out}, f, indent=2)


if __name__ == "__main__":
    main()
