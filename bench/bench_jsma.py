"""Our JSMA against torchattacks' JSMA (and the literal cleverhans port), side by side in one run.

Same model, same images (random, correctly classified MNIST test images), same random targets
(``(prediction + randint(1, 9)) mod 10``) for the targeted runs. Success = misclassified on the 8-bit image.

    pip install --no-deps torchattacks      # it never imports torchvision
    PYTHONPATH=. .venv/bin/python bench/bench_jsma.py --data-dir ../shared/data --n 75 --n-torchattacks 20

Default model: the reference robust model ``<data>/models/mnist_lenet5_advtrained.pt``. torchattacks works on
one image at a time, so it runs on the first ``--n-torchattacks`` images only; our runs are timed on those
same images (the comparison rows) and on all ``--n`` images.
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
    from workers.make import choose_benign

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


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Run ``fn``; return its output and the CPU seconds this process spent (with ``--threads 1`` this is
    robust to other processes sharing the cores, unlike wall time; on CUDA, wall time after a sync)."""
    if torch.cuda.is_available() and CUDA[0]:
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return out, time.perf_counter() - t
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


CUDA = [False]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--arch", default="lenet5_advertorch")
    ap.add_argument("--n", type=int, default=75)
    ap.add_argument("--n-torchattacks", type=int, default=20)
    ap.add_argument("--n-literal", type=int, default=10, help="images for the literal cleverhans port (0: skip)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the table to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from workers.attacks.jsma import jsma, jsma_reference, random_targets
    from workers.make import resolve_device
    from workers.nets import load_model

    dev = resolve_device(args.device)
    CUDA[0] = dev.type == "cuda"
    spec = args.model or str(Path(args.data_dir) / "models" / "mnist_lenet5_advtrained.pt")
    model = load_model(spec, device=dev, arch=args.arch if args.model is None or args.arch else None)
    x, y = pick_images(model, args.data_dir, args.n, args.seed)
    x, y = x.to(dev), y.to(dev)
    targets = random_targets(y, 10, torch.Generator().manual_seed(args.seed))
    k = min(args.n_torchattacks, len(y))
    rows: list[tuple[str, int, tuple[int, float, float], float]] = []

    def ours(mode: str, sl: slice, use_logits: bool = False) -> torch.Tensor:
        r = jsma(
            model, x[sl], y[sl], mode=mode, targets=targets[sl] if mode == "random" else None, use_logits=use_logits
        )
        return r.adv_u8.float() / 255

    sl_k = slice(0, k)
    if k > 0:
        try:
            import torchattacks

            atk = torchattacks.JSMA(model, theta=1.0, gamma=0.15)
            atk.set_mode_targeted_by_function(lambda images, labels: targets[: len(labels)])
            adv, sec = timed(lambda: atk(x[sl_k], y[sl_k]))
            rows.append(("torchattacks 3.5 JSMA (logits, one target)", k, score(model, x[sl_k], y[sl_k], adv), sec / k))
        except ImportError:
            print("torchattacks not installed: pip install --no-deps torchattacks")
        adv, sec = timed(lambda: ours("random", sl_k))
        rows.append(("ours, random (probs, same target)", k, score(model, x[sl_k], y[sl_k], adv), sec / k))
        adv, sec = timed(lambda: ours("random", sl_k, use_logits=True))
        rows.append(("ours, random (logits, same target)", k, score(model, x[sl_k], y[sl_k], adv), sec / k))
        adv, sec = timed(lambda: ours("all", sl_k))
        rows.append(("ours, all (probs)", k, score(model, x[sl_k], y[sl_k], adv), sec / k))
    m = min(args.n_literal, len(y))
    if m > 0:
        adv, sec = timed(lambda: jsma_reference(model, x[:m], targets[:m], guard=True))
        rows.append(("literal cleverhans 2.1 port, random (probs)", m, score(model, x[:m], y[:m], adv), sec / m))
        adv, sec = timed(lambda: ours("random", slice(0, m)))
        rows.append(("ours, random (probs), same images", m, score(model, x[:m], y[:m], adv), sec / m))
    n = len(y)
    sl_n = slice(0, n)
    adv, sec = timed(lambda: ours("random", sl_n))
    rows.append(("ours, random (probs)", n, score(model, x, y, adv), sec / n))
    adv, sec = timed(lambda: ours("all", sl_n))
    rows.append(("ours, all (probs) [stimulus default]", n, score(model, x, y, adv), sec / n))

    ta = next((r[3] for r in rows if r[0].startswith("torchattacks")), None)
    lines = [
        f"model {getattr(model, 'model_id', spec)}, device {dev}, torch threads {torch.get_num_threads()}, "
        f"seconds = {'wall (CUDA)' if CUDA[0] else 'CPU time of this process'}",
        "",
        "| method | images | success | mean L0 (SD) | s / image | speed-up vs torchattacks |",
        "|---|---|---|---|---|---|",
    ]
    for name, cnt, (ok, l0, sd), spi in rows:
        speed = f"{ta / spi:.1f}x" if ta else "-"
        lines.append(f"| {name} | {cnt} | {ok}/{cnt} | {l0:.2%} ({sd:.2%}) | {spi:.3f} | {speed} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
