"""The literal cleverhans 2.1 ``jsma_symbolic``, batched: what ``workers.attacks.jsma`` is tested against.

Full Jacobian (one backward pass per class) and the ``n x n`` pair map, as cleverhans computes them; slow, and
not registered as an attack. ``tests/workers/attacks/test_jsma.py`` checks the fast attack's identities and
trajectories against it, and ``bench/bench_jsma.py`` times both.
"""

from __future__ import annotations

import math

import torch


def jsma_reference(
    model: torch.nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    theta: float = 1.0,
    gamma: float = 0.15,
    use_logits: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    guard: bool = False,
    trace: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """A literal batched port of cleverhans 2.1 ``jsma_symbolic`` (full Jacobian, ``n x n`` pair map).

    For tests and benchmarks only. With ``guard=False`` it keeps cleverhans's behaviour on an all-zero saliency
    map (pixel 0 is perturbed and the domain goes to -1). ``trace`` collects ``(p1, p2)`` per iteration.
    """
    x_in = x.detach().clone()
    n_batch = x_in.shape[0]
    nb_features = int(x_in[0].numel())
    max_iters = int(math.floor(nb_features * gamma / 2))
    increase = theta > 0
    flat = x_in.flatten(1)
    domain = (flat < clip_max).to(x_in.dtype) if increase else (flat > clip_min).to(x_in.dtype)
    zero_diag = 1.0 - torch.eye(nb_features, dtype=x_in.dtype, device=x_in.device)
    cond_in = True
    i = 0
    stopped = torch.zeros(n_batch, dtype=torch.bool, device=x_in.device)
    while i < max_iters and cond_in:
        xg = x_in.detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(xg)
            preds = out if use_logits else torch.softmax(out, dim=1)
            nb_classes = preds.shape[1]
            grads = []
            for c in range(nb_classes):
                (g,) = torch.autograd.grad(preds[:, c].sum(), xg, retain_graph=c < nb_classes - 1)
                grads.append(g.flatten(1))
        jac = torch.stack(grads)  # [classes, N, n]
        onehot = torch.nn.functional.one_hot(targets, nb_classes).to(x_in.dtype)
        target_class = onehot.t().reshape(nb_classes, -1, 1)
        other_classes = (target_class != 1).to(x_in.dtype)
        grads_target = (jac * target_class).sum(0)
        grads_other = (jac * other_classes).sum(0)
        increase_coef = (4 * int(increase) - 2) * (domain == 0).to(x_in.dtype)
        target_tmp = grads_target - increase_coef * grads_target.abs().amax(1, keepdim=True)
        target_sum = target_tmp.unsqueeze(2) + target_tmp.unsqueeze(1)
        other_tmp = grads_other + increase_coef * grads_other.abs().amax(1, keepdim=True)
        other_sum = other_tmp.unsqueeze(2) + other_tmp.unsqueeze(1)
        if increase:
            scores_mask = (target_sum > 0) & (other_sum < 0)
        else:
            scores_mask = (target_sum < 0) & (other_sum > 0)
        scores = scores_mask.to(x_in.dtype) * (-target_sum * other_sum) * zero_diag
        flat_scores = scores.reshape(n_batch, -1)
        best = flat_scores.argmax(1)
        p1 = best % nb_features
        p2 = best // nb_features
        p1_one_hot = torch.nn.functional.one_hot(p1, nb_features).to(x_in.dtype)
        p2_one_hot = torch.nn.functional.one_hot(p2, nb_features).to(x_in.dtype)
        preds_onehot = torch.nn.functional.one_hot(preds.argmax(1), nb_classes).to(x_in.dtype)
        mod_not_done = (onehot * preds_onehot).sum(1) == 0
        cond = mod_not_done & (domain.sum(1) >= 2)
        if guard:
            stopped |= cond & (flat_scores.gather(1, best.unsqueeze(1)).squeeze(1) <= 0)
            cond &= ~stopped
        if trace is not None:
            trace.append((torch.where(cond, p1, -1), torch.where(cond, p2, -1)))
        to_mod = (p1_one_hot + p2_one_hot) * cond.to(x_in.dtype).unsqueeze(1)
        domain = domain - to_mod
        to_mod_r = to_mod.view_as(x_in)
        if increase:
            x_in = torch.clamp(x_in + to_mod_r * theta, max=clip_max)
        else:
            x_in = torch.clamp(x_in - to_mod_r * theta, min=clip_min)  # sic (cleverhans 2.1)
        i += 1
        cond_in = bool(cond.any())
    return x_in.detach()
