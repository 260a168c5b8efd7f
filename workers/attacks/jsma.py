"""JSMA (Papernot et al. 2016) as in cleverhans 2.1 (``jsma_symbolic``), batched, with algebraic speedups.

cleverhans 2.1 semantics kept here:

* the Jacobian is taken over the softmax probabilities (``use_logits=True`` takes it over the logits);
* ``theta = +1``, ``gamma = 0.15``: at most ``floor(n_features * gamma / 2)`` iterations (58 on MNIST), each
  setting a pair of features to ``clip(x + theta)``; a chosen pair leaves the search domain, and the initial
  domain holds the features not yet at ``clip_max`` (``clip_min`` when decreasing);
* a sample stops when the model predicts its target or fewer than two features are left in the domain;
* the target is random, ``(prediction + randint(1, 9)) mod n_classes``, unless one is given.

Deliberate differences:

* **Guard.** When the saliency map is all zero, cleverhans silently picks ``argmax = 0``: it perturbs pixel 0
  (twice) and leaves the domain at -1. Here the sample stops and is counted as a failure.
* **Algebra.** Over probabilities, ``sum_{k != t} p_k = 1 - p_t``, so ``beta = -alpha`` *exactly* (also after the
  domain masking, because ``max |beta| = max |alpha|``). cleverhans's pair score ``-(a_p + a_q)(b_p + b_q)``
  masked by ``a_p + a_q > 0, b_p + b_q < 0`` is then ``(a_p + a_q)^2`` on ``a_p + a_q > 0``, maximised by the two
  largest ``alpha`` entries inside the domain (masked entries are ``<= -max|alpha|`` and never win). So one
  backward pass (of ``p_t``) and a top-2 replace ten backward passes and an ``n x n`` map. Over logits two
  backward passes (``z_t`` and ``sum_k z_k``) give alpha and beta; the ``n x n`` pair map is still evaluated,
  in chunks. ``jsma_reference.py`` holds the literal port these identities are tested against.
* **Modes.** ``random`` runs one random target per image exactly as cleverhans does (stop on the target).
  ``all`` runs every target class in lock step and keeps, per image, the successful result that changes the
  fewest pixels. Each iteration changes exactly two new pixels (both in the domain), so the first iteration
  at which any run of an image succeeds gives its minimal L0; the image's other runs stop there. By default
  ``all`` also stops a run as soon as the image is misclassified (``stop="misclassified"``), i.e. it keeps the
  earliest misclassified iterate of the cleverhans trajectory; ``stop="target"`` reproduces cleverhans's stop.
* **Pruning (``all`` only).** Targets are tried most likely first (by the benign logits). ``max_targets=k`` keeps
  the k most likely; ``parallel=p`` runs p of an image's targets at a time and starts the next one only when
  one of them ends without success; the image settles on its first success (the best of the runs that succeed
  in that step). ``parallel=None`` (every kept target in lock step) returns the fewest-pixel success among
  them; a smaller ``parallel`` never loses a success (each run is the same deterministic trajectory) but may
  keep a result with more pixels, and saves the other targets' iterations. Every run stays a cleverhans
  trajectory for its target. The stimulus default (registry) is ``max_targets=None, parallel=2``.
* **Speed.** Each step is one forward and one backward pass over all active runs (``max_batch`` rows per model
  call, which bounds memory churn); on CPU the input gets channels-last strides (same values, faster mkldnn
  kernels; ``channels_last=False`` turns this off).

Success means misclassified (``F(x') != y``), judged on the 8-bit image (JSMA's pixels stay on the 8-bit grid
for ``theta = +-1``: each changed pixel goes to exactly ``clip_max`` or ``clip_min``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from workers.attacks.base import AttackResult, register
from workers.measures.budgets import to_uint8

MODES = ("random", "all")
STOPS = ("target", "misclassified")

# Run status codes.
_RUNNING, _REACHED, _FINAL, _GUARD, _CANCELLED, _PENDING = 0, 1, 2, 3, 4, 5


def random_targets(pred: torch.Tensor, n_classes: int, generator: torch.Generator | None) -> torch.Tensor:
    """cleverhans-style random targets: ``(pred + randint(1, n_classes - 1)) mod n_classes``."""
    off = torch.randint(1, n_classes, (pred.shape[0],), generator=generator, device="cpu").to(pred.device)
    return (pred + off) % n_classes


def _select_pair_probs(
    alpha: torch.Tensor, domain: torch.Tensor, increase: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best pair over probabilities: the two largest (increase) / smallest alpha entries in the domain."""
    s = alpha if increase else -alpha
    s = s.masked_fill(~domain, -math.inf)
    top = s.topk(2, dim=1)
    ok = torch.isfinite(top.values).all(1) & (top.values.sum(1) > 0)
    return top.indices[:, 0], top.indices[:, 1], ok


def _masked_tmp(
    alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor, increase: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """cleverhans's ``target_tmp`` and ``other_tmp``: out-of-domain features pushed out of contention."""
    coef = (2.0 if increase else -2.0) * (~domain).to(alpha.dtype)
    ta = alpha - coef * alpha.abs().amax(1, keepdim=True)
    tb = beta + coef * beta.abs().amax(1, keepdim=True)
    return ta, tb


def _select_pair_full(
    ta: torch.Tensor, tb: torch.Tensor, increase: bool, chunk: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The literal n x n pair search on (masked) alpha/beta, as cleverhans: returns (p1, p2, score > 0)."""
    n = ta.shape[1]
    off_diag = ~torch.eye(n, dtype=torch.bool, device=ta.device)
    p1s, p2s, oks = [], [], []
    for s in range(0, ta.shape[0], chunk):
        a = ta[s : s + chunk]
        b = tb[s : s + chunk]
        ts = a.unsqueeze(2) + a.unsqueeze(1)  # [B, n (p2 / row), n (p1 / col)]
        os_ = b.unsqueeze(2) + b.unsqueeze(1)
        mask = (ts > 0) & (os_ < 0) if increase else (ts < 0) & (os_ > 0)
        scores = torch.where(mask & off_diag, -ts * os_, torch.zeros((), dtype=ts.dtype, device=ts.device))
        flat = scores.flatten(1)
        best = flat.argmax(1)
        p1s.append(best % n)
        p2s.append(best // n)
        oks.append(flat.gather(1, best.unsqueeze(1)).squeeze(1) > 0)
    return torch.cat(p1s), torch.cat(p2s), torch.cat(oks)


def _as_model_input(x: torch.Tensor, shape: torch.Size, channels_last: bool) -> torch.Tensor:
    """``x`` (flat rows) as model input; optionally with NHWC strides (same values, faster mkldnn kernels)."""
    xv = x.view(-1, *shape[1:])
    if not channels_last or xv.dim() != 4:
        return xv
    out = torch.empty_strided(
        xv.shape,
        (xv.shape[1] * xv.shape[2] * xv.shape[3], 1, xv.shape[3] * xv.shape[1], xv.shape[1]),
        dtype=xv.dtype,
        device=xv.device,
    )
    out.copy_(xv)
    return out


def _forward_grad(
    model: torch.nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    need: torch.Tensor,
    shape: torch.Size,
    use_logits: bool,
    channels_last: bool,
    max_batch: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Predictions and alpha (beta over logits) for the rows ``x``, ``max_batch`` rows per model call.

    Over probabilities alpha is the gradient of ``p_t`` (one backward pass); over logits alpha is that of
    ``z_t`` and beta that of ``sum_{k != t} z_k`` (two). Rows outside ``need`` get no gradient (zeros)."""
    n = x.shape[0]
    step = n if not max_batch else max(1, int(max_batch))
    preds, alphas, betas = [], [], []
    for s in range(0, n, step):
        xa = _as_model_input(x[s : s + step], shape, channels_last)
        w = need[s : s + step]
        if not bool(w.any()):
            with torch.no_grad():
                preds.append(model(xa).argmax(1))
            alphas.append(torch.zeros(xa.shape[0], x.shape[1], dtype=x.dtype, device=x.device))
            if use_logits:
                betas.append(torch.zeros_like(alphas[-1]))
            continue
        xa.requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            preds.append(logits.argmax(1).detach())
            wt = w.to(logits.dtype)
            tt = t[s : s + step].unsqueeze(1)
            if use_logits:
                zt = logits.gather(1, tt).squeeze(1)
                (ga,) = torch.autograd.grad((zt * wt).sum(), xa, retain_graph=True)
                (gs,) = torch.autograd.grad((logits.sum(1) * wt).sum(), xa)
                a = ga.reshape(ga.shape[0], -1)
                alphas.append(a)
                betas.append(gs.reshape(gs.shape[0], -1) - a)
            else:
                pt = torch.softmax(logits, dim=1).gather(1, tt).squeeze(1)
                (ga,) = torch.autograd.grad((pt * wt).sum(), xa)
                alphas.append(ga.reshape(ga.shape[0], -1))
    if len(preds) == 1:
        return preds[0], alphas[0], betas[0] if use_logits else None
    return torch.cat(preds), torch.cat(alphas), torch.cat(betas) if use_logits else None


def _run(
    model: torch.nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    group: torch.Tensor | None,
    *,
    theta: float,
    gamma: float,
    use_logits: bool,
    stop: str,
    clip_min: float,
    clip_max: float,
    parallel: int | None = None,
    channels_last: bool = False,
    max_batch: int | None = None,
) -> dict[str, torch.Tensor]:
    """Run JSMA on R runs; every run is its own cleverhans trajectory (own iteration count and domain).

    ``group`` (image ids, runs of an image contiguous and in priority order, ``k`` per image) settles all runs
    of an image on its first success: the image's other runs are cancelled. ``parallel`` runs of an image are
    active at a time (``None``: all of them, in lock step); the image's next pending run starts when one of its
    active runs ends without success.
    """
    r = x0.shape[0]
    shape = x0.shape
    n_feat = int(x0[0].numel())
    max_iters = int(math.floor(n_feat * gamma / 2))
    increase = theta > 0
    dev = x0.device
    x = x0.detach().clone().flatten(1)
    domain = (x < clip_max) if increase else (x > clip_min)
    status = torch.full((r,), _RUNNING, dtype=torch.long, device=dev)
    n_img = k = 0
    if group is not None:
        n_img = int(group.max()) + 1
        k = r // n_img
        if parallel is not None and parallel < k:
            status.view(n_img, k)[:, parallel:] = _PENDING
    iters = torch.zeros(r, dtype=torch.long, device=dev)
    pred_r = torch.full((r,), -1, dtype=torch.long, device=dev)
    while True:
        act = (status == _RUNNING).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        ya, ta = y[act], t[act]
        at_cap = iters[act] >= max_iters
        dom_ok = domain[act].sum(1) >= 2
        pred, alpha, beta = _forward_grad(
            model, x[act], ta, ~at_cap & dom_ok, shape, use_logits, channels_last, max_batch
        )
        pred_r[act] = pred
        reached = pred == ta if stop == "target" else pred != ya
        new_status = torch.where(reached, _REACHED, torch.where(dom_ok & ~at_cap, _RUNNING, _FINAL))
        status[act] = new_status
        if group is not None:
            st = status.view(n_img, k)
            won = (new_status != _RUNNING) & (pred != ya)
            if bool(won.any()):
                settled = torch.zeros(n_img, dtype=torch.bool, device=dev)
                settled[group[act][won]] = True
                cancel = settled.unsqueeze(1) & ((st == _RUNNING) | (st == _PENDING))
                st[cancel] = _CANCELLED
            if parallel is not None and parallel < k:
                pending = st == _PENDING
                if bool(pending.any()):
                    free = (parallel - (st == _RUNNING).sum(1)).clamp(min=0)
                    start = pending & (pending.cumsum(1) <= free.unsqueeze(1))
                    st[start] = _RUNNING  # joins at the next step, from x0
        cont_local = status[act] == _RUNNING
        if not bool(cont_local.any()):
            continue
        rows = act[cont_local]
        alpha = alpha[cont_local]
        dom = domain[rows]
        if use_logits:
            assert beta is not None
            ta_, tb_ = _masked_tmp(alpha, beta[cont_local], dom, increase)
            p1, p2, ok = _select_pair_full(ta_, tb_, increase)
        else:
            p1, p2, ok = _select_pair_probs(alpha, dom, increase)
        status[rows[~ok]] = _GUARD
        rows, p1, p2 = rows[ok], p1[ok], p2[ok]
        xr = x[rows]
        ar = torch.arange(rows.numel(), device=dev)
        if increase:
            xr[ar, p1] = (xr[ar, p1] + theta).clamp(max=clip_max)
            xr[ar, p2] = (xr[ar, p2] + theta).clamp(max=clip_max)
        else:
            xr[ar, p1] = (xr[ar, p1] + theta).clamp(min=clip_min)
            xr[ar, p2] = (xr[ar, p2] + theta).clamp(min=clip_min)
        x[rows] = xr
        dr = domain[rows]
        dr[ar, p1] = False
        dr[ar, p2] = False
        domain[rows] = dr
        iters[rows] += 1
    success = ((status == _REACHED) | (status == _FINAL)) & (pred_r != y)
    return {
        "x": x.view(shape),
        "status": status,
        "iters": iters,
        "pred": pred_r,
        "success": success,
        "max_iters": torch.tensor(max_iters),
    }


@register(
    "jsma",
    "l0",
    ("CAI",),
    default=False,
    defaults={
        "mode": "all",
        "theta": 1.0,
        "gamma": 0.15,
        "use_logits": False,
        "stop": None,
        "max_targets": None,
        "parallel": 2,
    },
)
def jsma(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    condition: str = "CAI",
    generator: torch.Generator | None = None,
    mode: str = "all",
    targets: torch.Tensor | None = None,
    theta: float = 1.0,
    gamma: float = 0.15,
    use_logits: bool = False,
    stop: str | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    n_classes: int | None = None,
    max_targets: int | None = None,
    parallel: int | None = None,
    channels_last: bool | None = None,
    max_batch: int | None = 128,
    chunk_images: int = 256,
    **_: Any,
) -> AttackResult:
    """JSMA on a batch ``x`` (``[N, C, H, W]`` in [0, 1]) with true labels ``y``.

    ``mode="random"``: one target per image (``targets`` if given, else random as cleverhans), cleverhans's
    stop on the target unless ``stop`` says otherwise. ``mode="all"``: every class other than the
    prediction; per image, the successful run with the fewest iterations (= changed pixels), ties broken by
    the smaller L2; ``stop`` defaults to ``"misclassified"``. ``max_targets`` / ``parallel`` prune ``all`` (see
    the module docstring); the defaults here (``None`` / ``None``) are the exact lock step over every target.
    """
    if mode not in MODES:
        raise ValueError(f"unknown JSMA mode {mode!r}; choose one of {MODES}")
    stop = stop or ("target" if mode == "random" else "misclassified")
    if stop not in STOPS:
        raise ValueError(f"unknown stop {stop!r}; choose one of {STOPS}")
    if theta == 0:
        raise ValueError("theta must be non-zero")
    if max_targets is not None and max_targets < 1:
        raise ValueError("max_targets must be at least 1 (or None for every class)")
    if parallel is not None and parallel < 1:
        raise ValueError("parallel must be at least 1 (or None for all of an image's targets at once)")
    if channels_last is None:
        channels_last = x.dim() == 4 and x.device.type == "cpu"
    x = x.detach()
    y = y.to(x.device).long()
    n = x.shape[0]
    with torch.no_grad():
        logits0 = model(x)
    n_classes = n_classes or int(logits0.shape[1])
    pred0 = logits0.argmax(1)
    if mode == "random" and targets is None:
        targets = random_targets(pred0, n_classes, generator)
    kw = {
        "theta": theta,
        "gamma": gamma,
        "use_logits": use_logits,
        "stop": stop,
        "clip_min": clip_min,
        "clip_max": clip_max,
    }
    run_kw = {**kw, "channels_last": bool(channels_last), "max_batch": max_batch}
    adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    target_out = torch.full((n,), -1, dtype=torch.long, device=x.device)
    iters_out = torch.zeros(n, dtype=torch.long, device=x.device)
    notes = [""] * n
    for s in range(0, n, chunk_images):
        sl = slice(s, min(n, s + chunk_images))
        xb, yb, pb = x[sl], y[sl], pred0[sl]
        m = xb.shape[0]
        if mode == "random":
            assert targets is not None
            tb = targets[sl].to(x.device).long()
            out = _run(model, xb, yb, tb, None, **run_kw)
            adv[sl] = out["x"]
            success[sl] = out["success"]
            target_out[sl] = tb
            iters_out[sl] = out["iters"]
            for j in range(m):
                if int(out["status"][j]) == _GUARD:
                    notes[s + j] = "saliency map all zero"
                elif not bool(out["success"][j]):
                    notes[s + j] = "still classified correctly"
            continue
        k = min(n_classes - 1, max_targets or n_classes - 1)
        # Targets by the benign logits, most likely first (the prediction itself excluded).
        z = logits0[sl].detach().clone()
        z.scatter_(1, pb.unsqueeze(1), -math.inf)
        tb = z.argsort(dim=1, descending=True, stable=True)[:, :k].reshape(-1)
        group = torch.arange(m, device=x.device).repeat_interleave(k)
        out = _run(model, xb.repeat_interleave(k, 0), yb.repeat_interleave(k), tb, group, parallel=parallel, **run_kw)
        l2 = (out["x"] - xb.repeat_interleave(k, 0)).flatten(1).norm(dim=1)
        key = torch.where(out["success"], out["iters"].double() * 1e4 + l2.double(), math.inf).view(m, k)
        best = key.argmin(1)
        ok = torch.isfinite(key.gather(1, best.unsqueeze(1)).squeeze(1))
        idx = torch.arange(m, device=x.device) * k + best
        # Failed images keep the final attempt of their first target (for inspection; never stored as a stimulus).
        adv[sl] = torch.where(ok.view(-1, 1, 1, 1), out["x"][idx], out["x"][torch.arange(m, device=x.device) * k])
        success[sl] = ok
        target_out[sl] = torch.where(ok, tb[idx], -1)
        iters_out[sl] = torch.where(ok, out["iters"][idx], out["iters"].view(m, k).max(1).values)
        for j in range(m):
            if not bool(ok[j]):
                st = out["status"].view(m, k)[j]
                notes[s + j] = (
                    "saliency map all zero on every target"
                    if bool((st == _GUARD).all())
                    else "still classified correctly for every target"
                )
    return AttackResult(
        adv_u8=to_uint8(adv),
        success=success,
        target=target_out,
        iterations=iters_out,
        notes=notes,
        params={
            "mode": mode,
            "stop": stop,
            **{k_: v for k_, v in kw.items() if k_ != "stop"},
            **({"max_targets": max_targets, "parallel": parallel} if mode == "all" else {}),
        },
    )
