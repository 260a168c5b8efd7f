"""The paper's L0 set (75 complete CB/CAI/CAP triples on MNIST) end to end, as `lpstudy stimuli make` makes it.

Two runs in one process, same seed: the reference uses blocks of 25 source images (the demo's batch_size) with
attack calls cut at 25 images (what the worker did before it sized batches to the device); "sized" uses one
block of all 75 and lets ``workers.generation.sizing`` size the attack calls (CPU: up to 256 images, so the
whole block per call). Prints wall time, the ratio, complete triples, failures and their reasons, and the mean
L0 of CAI and CAP. (Different block sizes mean different seeds per block, so the images can differ a little.)

    python bench/bench_l0_set.py [--data-dir ../shared/data] [--n 75] [--seed 2018] [--only sized]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def run(n: int, seed: int, data_dir: Path, max_batch: int | None, out: Path, block: int) -> dict:
    from workers.generation.make import make_stimuli

    t0 = time.perf_counter()
    summary = make_stimuli(
        "mnist", "l0", "mnist-default", n, out, device="cpu", seed=seed, data_dir=data_dir, max_batch=max_batch,
        batch_size=block, progress=False,
    )
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LPSTUDY_DATA_DIR", "../shared/data")))
    ap.add_argument("--n", type=int, default=75)
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--only", choices=("reference", "sized"), default=None)
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, mb, block in (("reference", 25, 25), ("sized", None, args.n)):
            if args.only and args.only != name:
                continue
            s = run(args.n, args.seed, args.data_dir, mb, Path(tmp) / name, block)
            runs[name] = s
            c = s["conditions"]
            print(
                f"{name:9s} block={block} max_batch={mb or 'device'}: {s['wall_s']:.1f} s wall, "
                f"{s['n']}/{s['target']} complete, "
                f"{s['failed']} failed of {s['attempted']} tried, blocks {s['blocks']}; "
                f"CAI mean L0 {c['CAI'].get('mean_l0_frac', float('nan')):.2%}, "
                f"CAP mean L0 {c['CAP'].get('mean_l0_frac', float('nan')):.2%}; "
                f"seconds CB {c['CB']['seconds']:.1f} CAI {c['CAI']['seconds']:.1f} CAP {c['CAP']['seconds']:.1f}"
            )
            print("  failure reasons:", json.dumps(s["failure_reasons"]))
    if len(runs) == 2:
        print(f"sized / reference wall time: {runs['sized']['wall_s'] / runs['reference']['wall_s']:.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
