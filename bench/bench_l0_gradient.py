"""How well does a model's gradient predict what a 0 -> 1 pixel flip does? (the reason JSMA fails on it)

    PYTHONPATH=. .venv/bin/python bench/bench_l0_gradient.py --data-dir ../shared/data --n 20 \
        [--models mnist-default,mnist-second,mnist-advertorch-lenet5] [--threads 1]

Per correctly classified MNIST test image (``choose_benign``, ``--seed``) and per pixel p below 1, with the
margin ``m = z_y - max_{k != y} z_k`` (logits; negative = misclassified):

* predicted effect of setting p to 1: ``dm/dx_p * (1 - x_p)`` (first order, what a saliency map uses);
* real effect: ``m(x with x_p = 1) - m(x)``, one forward pass per pixel.

Reported per model, over the images: the Spearman rank correlation between predicted and real effects, the
rank (1 = first) that the truly best pixel gets in the gradient's order, the share of the truly best 10 pixels
among the gradient's best 10, and how many images a single flip already fools.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from workers.data.datasets import load_mnist
from workers.generation.make import choose_benign
from workers.models import load_model
from workers.models.wrapper import images_to_tensor


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)
    return logits.gather(1, y.unsqueeze(1)).squeeze(1) - other


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    rhos, ranks, top10, one_flip = [], [], [], 0
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        m0 = margin(model(xi), y[i : i + 1])
        (g,) = torch.autograd.grad(m0.sum(), xi)
        flat = x[i].flatten()
        cand = (flat < 1).nonzero().squeeze(1)
        pred = (g.flatten()[cand] * (1 - flat[cand])).numpy()
        imgs = flat.repeat(cand.numel(), 1)
        imgs[torch.arange(cand.numel()), cand] = 1.0
        with torch.no_grad():
            real = (margin(model(imgs.view(-1, 1, 28, 28)), y[i].repeat(cand.numel())) - m0.detach()).numpy()
        rhos.append(float(spearmanr(pred, real).statistic))
        order = np.argsort(pred, kind="stable")  # most negative predicted effect first
        best = int(np.argmin(real))
        ranks.append(int(np.nonzero(order == best)[0][0]) + 1)
        top10.append(len(set(order[:10].tolist()) & set(np.argsort(real, kind="stable")[:10].tolist())) / 10)
        one_flip += int(float(m0) + real.min() < 0)
    return {
        "images": x.shape[0],
        "spearman_median": round(statistics.median(rhos), 3),
        "spearman_min": round(min(rhos), 3),
        "spearman_max": round(max(rhos), 3),
        "best_pixel_rank_median": statistics.median(ranks),
        "best_pixel_rank_min": min(ranks),
        "best_pixel_rank_max": max(ranks),
        "top10_overlap_mean": round(statistics.mean(top10), 3),
        "fooled_by_one_flip": one_flip,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--models", default="mnist-default,mnist-second,mnist-advertorch-lenet5")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = load_mnist(args.data_dir, "test")
    labels = labels.astype(np.int64)
    for name in args.models.split(","):
        model = load_model(name, "cpu", data_dir=args.data_dir)
        idx = choose_benign(model, images, labels, args.n, args.seed, torch.device("cpu"))
        x = images_to_tensor(images[idx])
        y = torch.from_numpy(labels[idx])
        print(json.dumps({"model": name, **measure(model, x, y)}), flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
