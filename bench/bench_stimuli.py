"""Time each study's stimulus set (CB + CAI + CAP) with ``workers.generation.make.make_stimuli`` and print a table.

    PYTHONPATH=. .venv/bin/python bench/bench_stimuli.py --data-dir ../shared/data --device cpu \
        --mnist-model ../shared/data/models/mnist_lenet5_advtrained.pt --mnist-arch lenet5_advertorch \
        --n-l0 75 --n-cifar 10

Model specs are anything ``workers.models.load_model`` takes, or ``random:<arch>`` (random initialisation,
for timing only: success rates then mean nothing). ``--out FILE`` also writes the table (FILE) and the raw
summaries (FILE with ``.json``), rewritten after every study so a time-out keeps what was done.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def load(spec: str, device: torch.device, arch: str | None = None) -> torch.nn.Module:
    if spec.startswith("random:"):
        from workers.models import NormalizedModel, get_arch

        info = get_arch(spec.split(":", 1)[1])
        torch.manual_seed(0)
        net = NormalizedModel(info.build(), info.mean, info.std, name=spec, model_id=f"{spec}@noweights")
        return net.to(device).eval().requires_grad_(False)
    from workers.models import load_model

    return load_model(spec, device=device, arch=arch)


def fmt_row(study: str, n: int, s: dict[str, Any], device: str, model_id: str) -> str:
    c = s["conditions"]
    cai, cap = c["CAI"], c["CAP"]
    total = sum(c[k]["seconds"] for k in ("CB", "CAI", "CAP"))
    if study == "l0":
        q_cai = f"L0 {cai.get('mean_l0_frac', float('nan')):.2%}"
        q_cap = f"L0 {cap.get('mean_l0_frac', float('nan')):.2%}"
    else:
        q_cai = f"SSIM {cai.get('mean_ssim', float('nan')):.3f}"
        q_cap = f"SSIM {cap.get('mean_ssim', float('nan')):.3f}"
    return (
        f"| {study} | {device} | {model_id} | {n} | {cai['succeeded']}/{n} ({q_cai}) | {cai['seconds_per_image']:.3f} "
        f"| {cap['succeeded']}/{n} ({q_cap}) | {cap['seconds_per_image']:.3f} | {total:.1f} | {total / n * 75:.1f} |"
    )


HEADER = (
    "| study | device | model | n | CAI ok | CAI s/img | CAP ok | CAP s/img | set s | set s (n=75) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--studies", default="l0,l2,linf")
    ap.add_argument("--n-l0", type=int, default=75)
    ap.add_argument("--n-cifar", type=int, default=10)
    ap.add_argument("--mnist-model", default="mnist-default")
    ap.add_argument("--mnist-arch", default=None)
    ap.add_argument("--judge", default=None, help="second model for L0 CAP (default: the MNIST model itself)")
    ap.add_argument("--judge-arch", default=None)
    ap.add_argument("--cifar-model", default="cifar10-default")
    ap.add_argument("--cifar-arch", default=None)
    ap.add_argument("--batch-size", type=int, default=75)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", default=None, help="raw summaries (default: --out with .json)")
    ap.add_argument("--prefix-file", default=None, help="text put before the table in --out")
    ap.add_argument("--figures", default=None, help="also render example triples (and the SSIM figure) here")
    ap.add_argument("--keep", default=None, help="keep the generated sets in this folder")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from workers.generation.make import make_stimuli, resolve_device

    dev = resolve_device(args.device)
    lines = [HEADER]
    raw: dict[str, Any] = {"device": str(dev), "torch": torch.__version__}
    if dev.type == "cuda":
        raw["gpu"] = torch.cuda.get_device_name(dev)

    def flush() -> None:
        text = "\n".join(lines)
        print(text, flush=True)
        if args.out:
            prefix = Path(args.prefix_file).read_text() + "\n" if args.prefix_file else ""
            Path(args.out).write_text(prefix + text + "\n")
            json_path = Path(args.json) if args.json else Path(args.out).with_suffix(".json")
            json_path.write_text(json.dumps(raw, indent=1, default=str))

    if args.figures:
        from workers.data.datasets import load_cifar10

        cifar, _ = load_cifar10(args.data_dir, "test")
        raw["ssim_variants"] = ssim_variants_figure(cifar[[3, 7, 12]], Path(args.figures) / "ssim_variants.png")
        flush()
    for study in [s.strip() for s in args.studies.split(",") if s.strip()]:
        t0 = time.perf_counter()
        try:
            if study == "l0":
                model = load(args.mnist_model, dev, args.mnist_arch)
                judge = load(args.judge, dev, args.judge_arch) if args.judge else model
                dataset, n = "mnist", args.n_l0
            else:
                model = load(args.cifar_model, dev, args.cifar_arch)
                judge = None
                dataset, n = "cifar10", args.n_cifar
            with tempfile.TemporaryDirectory() as tmp:
                set_dir = Path(args.keep or tmp) / study
                s = make_stimuli(
                    dataset,
                    study,
                    model,
                    n,
                    set_dir,
                    device=dev,
                    seed=args.seed,
                    second_model=judge,
                    data_dir=args.data_dir,
                    batch_size=args.batch_size,
                    progress=False,
                )
                if args.figures:
                    scale = 8 if dataset == "mnist" else 6
                    meta = triples_figure(set_dir, Path(args.figures) / f"{study}_triples.png", scale=scale)
                    raw.setdefault("figures", {})[study] = meta
            raw[study] = {"summary": s, "judge": getattr(judge, "model_id", None), "wall": time.perf_counter() - t0}
            lines.append(fmt_row(study, n, s, str(dev), str(getattr(model, "model_id", "?"))))
        except Exception as exc:  # keep the other studies
            raw[study] = {"error": repr(exc)}
            lines.append(f"| {study} | {dev} | error: {exc!r} |")
        flush()


# ----------------------------------------------------------------------------------------------------------
# Figures for docs/stimuli.md (``--figures DIR``): example CB / CAI / CAP triples and the SSIM variants.
# ----------------------------------------------------------------------------------------------------------


def _grid(rows: list[list[Any]], scale: int, gap: int = 4) -> Any:
    """Nearest-neighbour upscaled uint8 images (HW or HWC) in a grid on a white background."""
    import numpy as np
    from PIL import Image

    def rgb(a: Any) -> Any:
        a = np.asarray(a)
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    h, w = rgb(rows[0][0]).shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h * scale + gap) + gap, cols * (w * scale + gap) + gap, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, a in enumerate(r):
            big = np.kron(rgb(a), np.ones((scale, scale, 1), np.uint8))
            y0, x0 = gap + i * (h * scale + gap), gap + j * (w * scale + gap)
            canvas[y0 : y0 + h * scale, x0 : x0 + w * scale] = big
    return Image.fromarray(canvas)


def _diff_map(b: Any, a: Any) -> Any:
    """|a - b| amplified to the full range (grey), for showing where a perturbation went."""
    import numpy as np

    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    if d.ndim == 3:
        d = d.max(axis=2)
    m = d.max() or 1.0
    return (255 - d / m * 255).round().astype(np.uint8)


def triples_figure(set_dir: Path, out_png: Path, k: int = 4, scale: int = 8) -> list[dict[str, Any]]:
    """Rows of CB | CAI | CAP (and their amplified differences) for k images where both attacks succeeded."""
    import csv

    import numpy as np
    from PIL import Image

    with (set_dir / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    by = {(r["condition"], int(r["image_index"])): r for r in rows}
    idx = sorted({i for (c, i) in by if c == "CAI" and ("CAP", i) in by})[:k]
    grid, meta = [], []
    for i in idx:
        imgs = [np.asarray(Image.open(set_dir / by[(c, i)]["path"])) for c in ("CB", "CAI", "CAP")]
        grid.append([*imgs, _diff_map(imgs[0], imgs[1]), _diff_map(imgs[0], imgs[2])])
        meta.append({c: by[(c, i)] for c in ("CB", "CAI", "CAP")})
    if grid:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        _grid(grid, scale).save(out_png, optimize=True)
    return meta


def ssim_variants_figure(images: Any, out_png: Path, scale: int = 6) -> list[dict[str, float]]:
    """Equal-MSE SSIM ascent at L2 = 6 with standard vs reflect SSIM: benign, both results, both differences."""
    import numpy as np

    from workers.attacks.wang import equal_mse_search
    from workers.measures.ssim import ssim

    x = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).double() / 255
    rows, stats = [], []
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[5:-5, 5:-5] = False
    outs = {}
    for v in ("standard", "reflect"):
        outs[v], _ = equal_mse_search(x, 6.0, +1, steps=150, variant=v, generator=torch.Generator().manual_seed(0))
    to8 = lambda t: (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    for i in range(x.shape[0]):
        b = to8(x[i])
        s8, r8 = to8(outs["standard"][i]), to8(outs["reflect"][i])
        rows.append([b, s8, r8, _diff_map(b, s8), _diff_map(b, r8)])
        st = {}
        for v, y in outs.items():
            e = (y[i] - x[i]) ** 2
            st[f"{v}_frame_share"] = float(e[:, frame].sum() / e.sum())
            st[f"{v}_ssim_std"] = float(ssim(x[i : i + 1], y[i : i + 1], "standard"))
            st[f"{v}_ssim_reflect"] = float(ssim(x[i : i + 1], y[i : i + 1], "reflect"))
        stats.append(st)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    _grid(rows, scale).save(out_png, optimize=True)
    return stats


if __name__ == "__main__":
    main()
