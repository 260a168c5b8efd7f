"""Make the paper's three stimulus sets on the real models, check them against the paper, draw the docs' grids.

    PYTHONPATH=. .venv/bin/python bench/paper_sets.py --data-dir ../shared/data --out /tmp/sets \
        [--studies l0,linf,l2] [--n-l0 75] [--n-cifar 100] [--seed 0] [--threads 1] [--figures docs/img]

Each study runs ``make_stimuli`` (what ``lpstudy stimuli make`` runs) on the default model, then reads the
manifest back and reports, judged on the stored PNGs: per condition the images fooled and the mean (SD) of the
study's measure (L0 for L0, L2 and standard SSIM for L2 and L-inf); for L0 CAP the three judges' agreement on
the target class and their lowest softmax confidence; for L2 and L-inf the energy ratio CAP / CAI and how many
source images have SSIM(CAI) > SSIM(CAP). ``--figures`` writes ``<study>_grid.png``: rows of source images,
columns CB | CAI | CAP (same source image per row). Results go to ``<out>/<study>/report.json`` and stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

STUDY = {"l0": "mnist", "l2": "cifar10", "linf": "cifar10"}
JUDGES = ("mnist-default", "mnist-second", "mnist-advertorch-lenet5")


def _stats(vals: list[float]) -> dict[str, float | None]:
    return {
        "mean": round(statistics.mean(vals), 4) if vals else None,
        "sd": round(statistics.stdev(vals), 4) if len(vals) > 1 else None,
        "min": round(min(vals), 4) if vals else None,
        "max": round(max(vals), 4) if vals else None,
    }


def report(study: str, out: Path, data_dir: str) -> dict[str, Any]:
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    by = {(r["condition"], int(r["image_index"])): r for r in rows}
    summary = json.loads((out / "summary.json").read_text())
    rep: dict[str, Any] = {"study": study, "n": summary["n"], "conditions": {}}
    for c in ("CB", "CAI", "CAP"):
        ok = [r for r in rows if r["condition"] == c]
        entry: dict[str, Any] = {"fooled_or_kept": len(ok), "attack": summary["conditions"][c].get("attack")}
        entry["seconds_per_image"] = summary["conditions"][c]["seconds_per_image"]
        if c != "CB":
            if study == "l0":
                entry["l0_pct"] = _stats([100 * float(r["l0_frac"]) for r in ok])
            else:
                entry["l2"] = _stats([float(r["l2"]) for r in ok])
                entry["linf_max"] = max(float(r["linf"]) for r in ok) if ok else None
            entry["ssim"] = _stats([float(r["ssim"]) for r in ok])
        rep["conditions"][c] = entry
    pairs = sorted({i for (c, i) in by if c == "CAI" and ("CAP", i) in by})
    rep["both_fooled"] = len(pairs)
    if study != "l0" and pairs:
        cai_l2 = statistics.mean(float(by[("CAI", i)]["l2"]) for i in pairs)
        cap_l2 = statistics.mean(float(by[("CAP", i)]["l2"]) for i in pairs)
        rep["pairs_l2_ratio_cap_over_cai"] = round(cap_l2 / cai_l2, 4)
        rep["pairs_cai_ssim_higher"] = sum(float(by[("CAI", i)]["ssim"]) > float(by[("CAP", i)]["ssim"]) for i in pairs)
    if study == "l0":
        rep["cap_judges"] = judge_agreement(out, [r for r in rows if r["condition"] == "CAP"], data_dir)
    return rep


@torch.no_grad()
def judge_agreement(out: Path, caps: list[dict[str, str]], data_dir: str) -> dict[str, Any]:
    """How many stored CAP images every judge classifies as the target, and the judges' confidences."""
    from workers.models import load_model

    if not caps:
        return {}
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(out / r["path"]))).float() / 255 for r in caps])
    x = x.unsqueeze(1)
    t = torch.tensor([int(r["target"]) for r in caps])
    res: dict[str, Any] = {"images": len(caps)}
    agree = torch.ones(len(caps), dtype=torch.bool)
    min_conf = torch.ones(len(caps))
    for name in JUDGES:
        p = torch.softmax(load_model(name, "cpu", data_dir=data_dir)(x), 1)
        hit = p.argmax(1) == t
        conf = p.gather(1, t.unsqueeze(1)).squeeze(1)
        res[name] = {"predicts_target": int(hit.sum()), "mean_conf_target": round(float(conf.mean()), 4)}
        agree &= hit
        min_conf = torch.minimum(min_conf, conf)
    res["all_agree"] = int(agree.sum())
    res["lowest_conf_of_the_three"] = _stats([float(v) for v in min_conf])
    return res


def grid(out: Path, png: Path, k: int, scale: int) -> list[int]:
    """Rows of CB | CAI | CAP for the first k source images that have all three; returns their indices."""
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    by = {(r["condition"], int(r["image_index"])): r for r in rows}
    idx = sorted(i for (c, i) in by if c == "CB" and ("CAI", i) in by and ("CAP", i) in by)[:k]
    gap = 4
    tiles = [
        [np.asarray(Image.open(out / by[(c, i)]["path"]).convert("RGB")) for c in ("CB", "CAI", "CAP")] for i in idx
    ]
    if not tiles:
        return []
    h, w = tiles[0][0].shape[:2]
    canvas = np.full((len(tiles) * (h * scale + gap) + gap, 3 * (w * scale + gap) + gap, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, a in enumerate(row):
            big = np.kron(a, np.ones((scale, scale, 1), np.uint8))
            y0, x0 = gap + r * (h * scale + gap), gap + c * (w * scale + gap)
            canvas[y0 : y0 + h * scale, x0 : x0 + w * scale] = big
    png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(png, optimize=True)
    return idx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--studies", default="l0,linf,l2")
    ap.add_argument("--n-l0", type=int, default=75)
    ap.add_argument("--n-cifar", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figures", default=None)
    ap.add_argument("--rows", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from workers.generation.make import make_stimuli

    for study in args.studies.split(","):
        ds = STUDY[study]
        out = Path(args.out) / study
        n = args.n_l0 if study == "l0" else args.n_cifar
        t0 = time.perf_counter()
        make_stimuli(
            ds, study, f"{ds}-default", n, out, device="cpu", seed=args.seed, data_dir=args.data_dir, progress=False
        )
        rep = report(study, out, args.data_dir)
        rep["wall_seconds"] = round(time.perf_counter() - t0, 1)
        rep["seed"] = args.seed
        if args.figures:
            rep["grid_rows"] = grid(
                out, Path(args.figures) / f"{study}_grid.png", args.rows, 6 if ds == "cifar10" else 5
            )
        (out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
        print(json.dumps(rep), flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
