"""Our JSMA against torchattacks' JSMA (and the literal cleverhans port), side by side in one run.

Same model, same images (random, correctly classified MNIST test images), same random targets
(``(prediction + randint(1, 9)) mod 10``) for the targeted runs. Success = misclassified on the 8-bit image.

    pip install --no-deps torchattacks      # it never imports torchvision
    PYTHONPATH=. .venv/bin/python bench/bench_jsma.py --data-dir ../shared/data --n 75 --threads 1

Default model: the reference robust model ``<data>/models/mnist_lenet5_advtrained.pt``. torchattacks works on
one image at a time; by default it runs on all ``--n`` images (``--n-torchattacks`` runs it on the first k only,
and then every row runs on those k). Seconds per image are given as CPU time of this process
(``time.process_time``; with ``--threads 1`` that is robust to other processes on shared cores) and as wall time;
the speed-up column uses CPU time (wall time after a sync on CUDA). Our rows are timed ``--repeats`` times and the
median is reported; torchattacks and the literal port once.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def pick_images(model: torch.nn.Module, data_dir: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from workers.data.datasets import load_mnist

    images, labels = load_mnist(data_dir, "test")
    from workers.generation.make import choose_benign

    dev = next(model.parameters()).device
    idx = choose_benign(model, images, labels.astype(np.int64), n, seed, dev)
    return torch.from_numpy(images[idx]).float().div(255).unsqueeze(1), torch.from_numpy(labels[idx].astype(np.int64))


def score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor) -> tuple[int, float, float]:
    """(successes, mean L0 fraction of the successes, SD) judged on the 8-bit image."""
    a8 = (adv.clamp(0, 1) * 255).round()
    x8 = (x * 255).round()
    with torch.no_grad():
        ok = model(a8 / 255).argmax(1) != y
    l0 = (a8 != x8).flatten(1).sum(1).double() / x[0].numel()
    if not bool(ok.any()):
        return 0, float("nan"), float("nan")
    return int(ok.sum()), float(l0[ok].mean()), float(l0[ok].std()) if int(ok.sum()) > 1 else 0.0


def timed(fn: Callable[[], torch.Tensor], repeats: int = 1) -> tuple[torch.Tensor, float, float]:
    """Run ``fn`` ``repeats`` times; return its output and the median (CPU seconds, wall seconds).

    CPU seconds = what this process spent (``time.process_time``); on CUDA both are wall time after a sync."""
    cpu, wall = [], []
    out = None
    for _ in range(max(1, repeats)):
        if CUDA[0]:
            torch.cuda.synchronize()
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        if CUDA[0]:
            torch.cuda.synchronize()
        w = time.perf_counter() - w
        cpu.append(w if CUDA[0] else time.process_time() - c)
        wall.append(w)
    assert out is not None
    return out, sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2]


CUDA = [False]

# Our `all` variants: (row name, parameters). The second is the stimulus default (workers.attacks registry).
ALL_VARIANTS = [
    ("ours, all, exact (every target in lock step: fewest pixels)", {"max_targets": None, "parallel": None}),
    ("ours, all, stimulus default (every target, 2 at a time)", {"max_targets": None, "parallel": 2}),
    ("ours, all, fast (4 most likely targets, one at a time)", {"max_targets": 4, "parallel": 1}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--arch", default="lenet5_advertorch")
    ap.add_argument("--n", type=int, default=75)
    ap.add_argument("--n-torchattacks", type=int, default=None, help="run everything on the first k images only")
    ap.add_argument("--n-literal", type=int, default=10, help="images for the literal cleverhans port (0: skip)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats of our rows (median)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the table to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from workers.attacks import get_attack
    from workers.attacks.jsma import jsma, random_targets
    from workers.attacks.jsma_reference import jsma_reference
    from workers.generation.make import resolve_device
    from workers.models import load_model

    dev = resolve_device(args.device)
    CUDA[0] = dev.type == "cuda"
    spec = args.model or str(Path(args.data_dir) / "models" / "mnist_lenet5_advtrained.pt")
    model = load_model(spec, device=dev, arch=args.arch if args.model is None or args.arch else None)
    x, y = pick_images(model, args.data_dir, args.n, args.seed)
    n = min(len(y), args.n_torchattacks or len(y))
    x, y = x[:n].to(dev), y[:n].to(dev)
    targets = random_targets(y, 10, torch.Generator().manual_seed(args.seed))
    defaults = get_attack("jsma").defaults
    assert {k: defaults.get(k) for k in ("max_targets", "parallel")} == ALL_VARIANTS[1][1], defaults
    rows: list[tuple[str, int, tuple[int, float, float], float, float]] = []

    def ours(mode: str, sl: slice, use_logits: bool = False, **kw: object) -> torch.Tensor:
        r = jsma(
            model,
            x[sl],
            y[sl],
            mode=mode,
            targets=targets[sl] if mode == "random" else None,
            use_logits=use_logits,
            **kw,  # type: ignore[arg-type]
        )
        return r.adv_u8.float() / 255

    sl = slice(0, n)
    try:
        import torchattacks

        atk = torchattacks.JSMA(model, theta=1.0, gamma=0.15)
        atk.set_mode_targeted_by_function(lambda images, labels: targets[: len(labels)])
        adv, sec, wsec = timed(lambda: atk(x[sl], y[sl]))
        rows.append(("torchattacks 3.5 JSMA (logits, one target)", n, score(model, x, y, adv), sec / n, wsec / n))
    except ImportError:
        print("torchattacks not installed: pip install --no-deps torchattacks")
    r = args.repeats
    adv, sec, wsec = timed(lambda: ours("random", sl), r)
    rows.append(("ours, random (probs, same target)", n, score(model, x, y, adv), sec / n, wsec / n))
    adv, sec, wsec = timed(lambda: ours("random", sl, use_logits=True), r)
    rows.append(("ours, random (logits, same target)", n, score(model, x, y, adv), sec / n, wsec / n))
    for name, kw in ALL_VARIANTS:
        adv, sec, wsec = timed(lambda kw=kw: ours("all", sl, **kw), r)  # type: ignore[misc]
        rows.append((name, n, score(model, x, y, adv), sec / n, wsec / n))
    m = min(args.n_literal, n)
    if m > 0:
        adv, sec, wsec = timed(lambda: jsma_reference(model, x[:m], targets[:m], guard=True))
        rows.append(
            ("literal cleverhans 2.1 port, random (probs)", m, score(model, x[:m], y[:m], adv), sec / m, wsec / m)
        )
        adv, sec, wsec = timed(lambda: ours("random", slice(0, m)), r)
        rows.append(
            ("ours, random (probs), the literal port's images", m, score(model, x[:m], y[:m], adv), sec / m, wsec / m)
        )

    ta = next((row[3] for row in rows if row[0].startswith("torchattacks")), None)
    lines = [
        f"model {getattr(model, 'model_id', spec)}, device {dev}, torch threads {torch.get_num_threads()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; speed-up = torchattacks s/image / ours, "
        f"{'wall time (CUDA)' if CUDA[0] else 'CPU time of this process'}",
        "",
        "| method | images | success | mean L0 (SD) | CPU s / image | wall s / image | speed-up vs torchattacks |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cnt, (ok, l0, sd), spi, wpi in rows:
        speed = f"{ta / spi:.1f}x" if ta else "-"
        lines.append(f"| {name} | {cnt} | {ok}/{cnt} | {l0:.2%} ({sd:.2%}) | {spi:.3f} | {wpi:.3f} | {speed} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
