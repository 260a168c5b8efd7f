"""JSMA: the algebraic identities against a literal cleverhans 2.1 port, the guard, modes, seeds, real data."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from workers.attacks import attack_for, get_attack
from workers.attacks.jsma import (
    _masked_tmp,
    _select_pair_full,
    _select_pair_probs,
    jsma,
    random_targets,
)
from workers.attacks.jsma_reference import jsma_reference


class TinyNet(nn.Module):
    def __init__(self, hw: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * hw * hw, 32)
        self.fc2 = nn.Linear(32, 10)
        self.to(dtype)
        self.model_id = f"tiny-{seed}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.tanh(self.fc1(h)))


class ConstantNet(nn.Module):
    """Output independent of the input: the saliency map is all zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 10, dtype=x.dtype) + torch.arange(10, dtype=x.dtype) + 0 * x.sum()


def _batch(n: int = 6, hw: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, hw, hw, generator=g, dtype=torch.float64) * 255).round() / 255
    x[:, :, : hw // 4] = 0.0  # some black rows, like MNIST
    x[:, :, -2:] = 1.0  # some saturated pixels (outside the initial domain)
    return x


def _full_jacobian(model: nn.Module, x: torch.Tensor, logits: bool) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    p = out if logits else torch.softmax(out, 1)
    rows = [torch.autograd.grad(p[:, c].sum(), xg, retain_graph=True)[0].flatten(1) for c in range(10)]
    return torch.stack(rows)  # [10, N, n]


def _literal_pair(jac: torch.Tensor, t: torch.Tensor, domain: torch.Tensor) -> tuple[list[set[int]], torch.Tensor]:
    """cleverhans's pair choice from the full Jacobian (as in jsma_symbolic)."""
    onehot = torch.nn.functional.one_hot(t, 10).double().t().unsqueeze(2)
    gt = (jac * onehot).sum(0)
    go = (jac * (1 - onehot)).sum(0)
    coef = 2.0 * (~domain).double()
    tt = gt - coef * gt.abs().amax(1, keepdim=True)
    ot = go + coef * go.abs().amax(1, keepdim=True)
    ts = tt.unsqueeze(2) + tt.unsqueeze(1)
    os_ = ot.unsqueeze(2) + ot.unsqueeze(1)
    n = ts.shape[1]
    scores = ((ts > 0) & (os_ < 0)).double() * (-ts * os_) * (1 - torch.eye(n, dtype=torch.float64))
    best = scores.flatten(1).argmax(1)
    pairs = [{int(b % n), int(b // n)} for b in best]
    return pairs, scores.flatten(1).amax(1)


def test_beta_is_minus_alpha_over_probabilities() -> None:
    model = TinyNet()
    for seed in range(3):
        x = _batch(seed=seed)
        jac = _full_jacobian(model, x, logits=False)
        t = torch.randint(0, 10, (x.shape[0],), generator=torch.Generator().manual_seed(seed))
        onehot = torch.nn.functional.one_hot(t, 10).double().t().unsqueeze(2)
        alpha = (jac * onehot).sum(0)
        beta = (jac * (1 - onehot)).sum(0)
        assert torch.allclose(beta, -alpha, atol=1e-12 * max(1.0, float(alpha.abs().max())) + 1e-15)
        # and after cleverhans's domain masking, other_tmp == -target_tmp
        domain = torch.rand(alpha.shape, generator=torch.Generator().manual_seed(seed)) < 0.7
        ta, tb = _masked_tmp(alpha, beta, domain, increase=True)
        assert torch.allclose(tb, -ta, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_top2_pair_equals_literal_pair_map(seed: int) -> None:
    model = TinyNet(seed=seed)
    x = _batch(8, seed=seed)
    jac = _full_jacobian(model, x, logits=False)
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 10, (8,), generator=g)
    domain = (x.flatten(1) < 1) & (torch.rand(8, 256, generator=g) < 0.8)
    literal, best_score = _literal_pair(jac, t, domain)
    alpha = jac.gather(0, t.view(1, -1, 1).expand(1, -1, 256)).squeeze(0)
    p1, p2, ok = _select_pair_probs(alpha, domain, increase=True)
    assert ok.tolist() == (best_score > 0).tolist()
    for i in range(8):
        if ok[i]:
            assert {int(p1[i]), int(p2[i])} == literal[i]


@pytest.mark.parametrize("seed", range(3))
def test_logits_two_backward_passes_equal_literal(seed: int) -> None:
    model = TinyNet(seed=seed)
    x = _batch(6, seed=seed)
    jac = _full_jacobian(model, x, logits=True)
    t = torch.randint(0, 10, (6,), generator=torch.Generator().manual_seed(seed))
    xg = x.clone().requires_grad_(True)
    z = model(xg)
    alpha = torch.autograd.grad(z.gather(1, t.unsqueeze(1)).sum(), xg, retain_graph=True)[0].flatten(1)
    beta = torch.autograd.grad(z.sum(), xg)[0].flatten(1) - alpha
    onehot = torch.nn.functional.one_hot(t, 10).double().t().unsqueeze(2)
    assert torch.allclose(alpha, (jac * onehot).sum(0), atol=1e-12)
    assert torch.allclose(beta, (jac * (1 - onehot)).sum(0), atol=1e-10)
    domain = x.flatten(1) < 1
    literal, best_score = _literal_pair(jac, t, domain)
    ta, tb = _masked_tmp(alpha, beta, domain, increase=True)
    p1, p2, ok = _select_pair_full(ta, tb, increase=True, chunk=4)
    for i in range(6):
        assert bool(ok[i]) == bool(best_score[i] > 0)
        if ok[i]:
            assert {int(p1[i]), int(p2[i])} == literal[i]


@pytest.mark.parametrize("use_logits", [False, True])
def test_random_mode_reproduces_the_literal_port(use_logits: bool) -> None:
    """Whole trajectories: same targets -> the same adversarial images as the literal cleverhans port."""
    model = TinyNet(seed=5)
    x = _batch(8, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)
    t = random_targets(y, 10, torch.Generator().manual_seed(0))
    ours = jsma(model, x, y, mode="random", targets=t, use_logits=use_logits)
    ref = jsma_reference(model, x, t, use_logits=use_logits, guard=True)
    assert torch.equal(ours.adv_u8, (ref * 255).round().to(torch.uint8))
    with torch.no_grad():
        ref_pred = model(ref).argmax(1)
    assert ours.success.tolist() == (ref_pred != y).tolist()


def test_guard_stops_on_all_zero_saliency() -> None:
    model = ConstantNet()
    x = _batch(3)
    y = torch.full((3,), 9)
    t = torch.zeros(3, dtype=torch.long)
    # cleverhans's trap: pixel 0 gets perturbed although the map is all zero
    ref = jsma_reference(model, x, t, guard=False)
    assert bool((ref.flatten(1)[:, 0] == 1.0).all())
    assert torch.equal(ref.flatten(1)[:, 1:], x.flatten(1)[:, 1:])
    ours = jsma(model, x, y, mode="random", targets=t)
    assert not bool(ours.success.any())
    assert all(note == "saliency map all zero" for note in ours.notes)
    assert torch.equal(ours.adv_u8, (x * 255).round().to(torch.uint8))
    assert ours.iterations.tolist() == [0, 0, 0]
    ours_all = jsma(model, x, y, mode="all")
    assert not bool(ours_all.success.any())
    assert all("all zero" in note for note in ours_all.notes)


def test_all_mode_is_at_least_as_good_and_l0_is_two_per_iteration() -> None:
    model = TinyNet(seed=3)
    x = _batch(10, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)
    rnd = jsma(model, x, y, mode="random", generator=torch.Generator().manual_seed(0))
    allm = jsma(model, x, y, mode="all")
    allt = jsma(model, x, y, mode="all", stop="target")
    assert int(allm.success.sum()) >= int(rnd.success.sum())
    assert int(allm.success.sum()) >= int(allt.success.sum())
    x_u8 = (x * 255).round().to(torch.uint8)
    l0 = (allm.adv_u8 != x_u8).flatten(1).sum(1)
    l0_t = (allt.adv_u8 != x_u8).flatten(1).sum(1)
    for i in range(10):
        if allm.success[i]:
            assert int(l0[i]) == 2 * int(allm.iterations[i])
            assert int(allm.target[i]) != int(y[i])
            if allt.success[i]:
                assert int(l0[i]) <= int(l0_t[i])
        else:
            assert int(allm.target[i]) == -1
    # never over gamma = 15% of the features
    assert int(l0.max()) <= math.floor(256 * 0.15 / 2) * 2
    with torch.no_grad():
        pred = model(allm.adv_u8.double() / 255).argmax(1)
    assert ((pred != y) == allm.success).all()


def _per_target_runs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every target of every image run on its own (random mode, stop on misclassification), most likely first.

    Returns (targets [N, 9] in the order `all` tries them, iterations to success [N, 9], inf where it failed)."""
    with torch.no_grad():
        z = model(x)
    z = z.scatter(1, z.argmax(1, keepdim=True), -math.inf)
    order = z.argsort(dim=1, descending=True, stable=True)[:, :9]
    iters = torch.full(order.shape, math.inf, dtype=torch.float64)
    for c in range(9):
        r = jsma(model, x, y, mode="random", targets=order[:, c], stop="misclassified")
        iters[:, c] = torch.where(r.success, r.iterations.double(), math.inf)
    return order, iters


@pytest.mark.parametrize("max_targets", [1, 3, 9])
def test_pruned_lock_step_is_the_best_of_the_targets_it_ran(max_targets: int) -> None:
    """max_targets=k (lock step): the fewest-pixel success among the k most likely targets, never more pixels."""
    model = TinyNet(seed=6)
    x = _batch(12, seed=6)
    with torch.no_grad():
        y = model(x).argmax(1)
    order, iters = _per_target_runs(model, x, y)
    res = jsma(model, x, y, mode="all", max_targets=max_targets)
    assert res.params["max_targets"] == max_targets and res.params["parallel"] is None
    best = iters[:, :max_targets].min(1).values
    x_u8 = (x * 255).round().to(torch.uint8)
    l0 = (res.adv_u8 != x_u8).flatten(1).sum(1)
    for i in range(12):
        assert bool(res.success[i]) == bool(math.isfinite(best[i]))
        if res.success[i]:
            assert int(res.iterations[i]) == int(best[i]) and int(l0[i]) == 2 * int(best[i])
            assert int(res.target[i]) in order[i, :max_targets].tolist()
    if max_targets == 9:
        full = jsma(model, x, y, mode="all")
        assert torch.equal(full.adv_u8, res.adv_u8) and torch.equal(full.success, res.success)


@pytest.mark.parametrize("parallel", [1, 2])
def test_parallel_tries_targets_in_order_and_keeps_every_success(parallel: int) -> None:
    """parallel=1: the first target (most likely first) that succeeds; every image that any target can
    fool is fooled (the same successes as the exact lock step), never with more pixels than gamma allows."""
    model = TinyNet(seed=7)
    x = _batch(12, seed=7)
    with torch.no_grad():
        y = model(x).argmax(1)
    order, iters = _per_target_runs(model, x, y)
    res = jsma(model, x, y, mode="all", parallel=parallel)
    exact = jsma(model, x, y, mode="all")
    assert res.success.tolist() == exact.success.tolist()
    assert res.success.tolist() == torch.isfinite(iters).any(1).tolist()
    x_u8 = (x * 255).round().to(torch.uint8)
    l0 = (res.adv_u8 != x_u8).flatten(1).sum(1)
    for i in range(12):
        if not res.success[i]:
            assert int(res.target[i]) == -1
            continue
        c = order[i].tolist().index(int(res.target[i]))
        assert float(iters[i, c]) == float(res.iterations[i]) and int(l0[i]) == 2 * int(res.iterations[i])
        assert int(res.iterations[i]) >= int(exact.iterations[i])  # the exact lock step is never worse
        if parallel == 1:  # every more likely target failed
            assert not bool(torch.isfinite(iters[i, :c]).any())
    with torch.no_grad():
        pred = model(res.adv_u8.double() / 255).argmax(1)
    assert ((pred != y) == res.success).all()


def test_bad_pruning_parameters() -> None:
    x = _batch(2)
    with pytest.raises(ValueError):
        jsma(TinyNet(), x, torch.tensor([0, 1]), mode="all", max_targets=0)
    with pytest.raises(ValueError):
        jsma(TinyNet(), x, torch.tensor([0, 1]), mode="all", parallel=0)


def test_seeds_reproduce_targets_and_images() -> None:
    model = TinyNet(seed=4)
    x = _batch(6, seed=4)
    y = model(x).argmax(1).detach()
    a = jsma(model, x, y, mode="random", generator=torch.Generator().manual_seed(11))
    b = jsma(model, x, y, mode="random", generator=torch.Generator().manual_seed(11))
    assert torch.equal(a.adv_u8, b.adv_u8) and torch.equal(a.target, b.target)
    assert bool((a.target != y).all())


def test_registry() -> None:
    # JSMA stays selectable by name; the L0 defaults are the exact search (CAI) and donor pasting (CAP)
    assert attack_for("l0", "CAI").name == "l0_search"
    assert attack_for("l0", "CAP").name == "l0_paste"
    assert get_attack("jsma").norms == ("l0",)
    assert attack_for("l2", "CAP").name == "l2_fixed"
    assert attack_for("linf", "CAI").name == "linf_pgd_ssim"
    assert get_attack("jsma").defaults["mode"] == "all"
    assert get_attack("jsma").defaults["max_targets"] is None and get_attack("jsma").defaults["parallel"] == 2
    with pytest.raises(KeyError):
        get_attack("fgsm")
    assert attack_for("l0", "CB").name == "benign"  # CB is the benign identity, through the same registry
    with pytest.raises(ValueError):
        attack_for("l0", "XX")
    with pytest.raises(ValueError):
        jsma(TinyNet(), _batch(1), torch.tensor([0]), mode="some")


# ----------------------------------------------------------------------------------------------------------
# Real data: 75 random, correctly classified MNIST test images against the reference robust model.
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_75(data_dir):  # type: ignore[no-untyped-def]
    from workers.data.datasets import load_mnist
    from workers.models import load_model

    model = load_model(data_dir / "models" / "mnist_lenet5_advtrained.pt", arch="lenet5_advertorch")
    images, labels = load_mnist(data_dir, "test")
    order = np.random.default_rng(0).permutation(len(labels))[:200]
    x = torch.from_numpy(images[order]).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels[order].astype(np.int64))
    with torch.no_grad():
        ok = (model(x).argmax(1) == y).nonzero().squeeze(1)[:75]
    assert ok.numel() == 75
    return model, x[ok], y[ok]


@pytest.mark.realdata
@pytest.mark.parametrize(
    "params",
    [{}, {"max_targets": None, "parallel": 2}],
    ids=["exact", "stimulus-default"],
)
def test_real_all_mode_meets_the_bar(mnist_75, params) -> None:  # type: ignore[no-untyped-def]
    """The issue's bar: at least 57/75 at a mean L0 of at most 10.7% (the literal port's `all` result), for the
    exact lock step and for the pruned schedules (the stimulus default runs every target, two at a time)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, x, y = mnist_75
    t0 = time.perf_counter()
    res = jsma(model, x, y, mode="all", **params)
    seconds = (time.perf_counter() - t0) / 75
    x_u8 = (x * 255).round().to(torch.uint8)
    l0 = (res.adv_u8 != x_u8).flatten(1).sum(1).double() / 784
    ok = res.success
    assert int(ok.sum()) >= 57
    assert float(l0[ok].mean()) <= 0.107
    assert float(l0[ok].max()) <= 0.15
    with torch.no_grad():
        pred = model(res.adv_u8.float() / 255).argmax(1)
    assert bool((pred[ok] != y[ok]).all())
    print(f"all {params}: {int(ok.sum())}/75, mean L0 {float(l0[ok].mean()):.2%}, {seconds:.3f} s/image")


@pytest.mark.realdata
def test_real_random_mode(mnist_75) -> None:  # type: ignore[no-untyped-def]
    model, x, y = mnist_75
    res = jsma(model, x, y, mode="random", generator=torch.Generator().manual_seed(0))
    # the literal port got 27/75 (7/75 reaching their target) on its own draw of images and targets
    assert 18 <= int(res.success.sum()) <= 40
