"""L0 CAP by pasting donor pixels, judged by an ensemble: tiny template-matching judges on synthetic digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workers.attacks.l0_paste import PAPER_MEAN_FRACTION, PAPER_SD_FRACTION, draw_sizes, l0_paste


def _template(c: int) -> torch.Tensor:
    """Class ``c``: a bright 3-pixel-wide bar in one of ten positions (rows for 0-4, columns for 5-9)."""
    t = torch.zeros(28, 28)
    if c < 5:
        t[3 + 5 * c : 6 + 5 * c, 4:24] = 1.0
    else:
        t[4:24, 3 + 5 * (c - 5) : 6 + 5 * (c - 5)] = 1.0
    return t


TEMPLATES = torch.stack([_template(c) for c in range(10)])


class Matcher(nn.Module):
    """A judge: correlation with the class templates, each judge with its own weighting and temperature."""

    def __init__(self, seed: int, temperature: float = 0.4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = TEMPLATES + 0.05 * torch.rand(TEMPLATES.shape, generator=g)
        self.register_buffer("w", (w / w.flatten(1).norm(dim=1).view(10, 1, 1)).flatten(1))
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1)
        return (f @ self.w.t()) / (f.norm(dim=1, keepdim=True) + 1e-6) / self.temperature * 10


class Stubborn(nn.Module):
    """A judge that always says class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(x.shape[0], 10)
        z[:, 0] = 10.0
        return z


def _digits(classes: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = TEMPLATES[classes].unsqueeze(1).clone()
    x = x * (0.8 + 0.2 * torch.rand(x.shape, generator=g))
    return (x * 255).round() / 255


def _donors() -> tuple[np.ndarray, np.ndarray]:
    classes = [c for c in range(10) for _ in range(4)]
    d = _digits(classes, seed=9)
    return (d[:, 0] * 255).round().to(torch.uint8).numpy(), np.asarray(classes)


def test_pastes_donor_pixels_and_every_judge_agrees() -> None:
    torch.set_num_threads(1)
    judges = [Matcher(0), Matcher(1), Matcher(2)]
    x = _digits([1, 3, 6, 8, 2, 7], seed=0)
    y = judges[0](x).argmax(1)
    donors, donor_y = _donors()
    res = l0_paste(
        judges[0],
        x,
        y,
        condition="CAP",
        generator=torch.Generator().manual_seed(0),
        judges=judges[1:],
        donor_images=donors,
        donor_labels=donor_y,
        confidence=0.6,
    )
    assert bool(res.success.all())
    x_u8 = (x * 255).round().to(torch.uint8)
    changed = (res.adv_u8 != x_u8).flatten(1)
    assert int(changed.sum(1).max()) <= 117
    assert bool((changed.sum(1) <= res.extra["k"]).all())  # a pasted pixel may equal the benign one
    adv = res.adv_u8.float() / 255
    for j in judges:
        p = torch.softmax(j(adv), 1)
        assert bool((p.argmax(1) == res.target).all())
        assert bool((p.gather(1, res.target.unsqueeze(1)).squeeze(1) >= 0.6).all())
    assert bool((res.target != y).all())
    # the changed pixels are those of one donor digit of the target class
    for i in range(x.shape[0]):
        pix = changed[i].nonzero().squeeze(1)
        vals = res.adv_u8[i].flatten()[pix]
        pool = torch.from_numpy(donors[donor_y == int(res.target[i])]).flatten(1)[:, pix]
        assert bool((pool == vals).all(1).any())
    assert bool((res.extra["k"] >= res.extra["k_drawn"]).all())
    assert res.params["judges"] and len(res.params["judges"]) == 3


def test_fails_when_one_judge_never_agrees() -> None:
    judges = [Matcher(0), Matcher(1), Stubborn()]
    x = _digits([1, 3], seed=1)
    y = judges[0](x).argmax(1)
    donors, donor_y = _donors()
    donor_y = np.where(donor_y == 0, 1, donor_y)  # no donor of class 0, the only class the stubborn judge says
    res = l0_paste(judges[0], x, y, condition="CAP", judges=judges[1:], donor_images=donors, donor_labels=donor_y)
    assert not bool(res.success.any())
    assert all("judges" in n for n in res.notes)


def test_needs_three_judges_and_donors() -> None:
    m = Matcher(0)
    x = _digits([1], seed=2)
    y = m(x).argmax(1)
    donors, donor_y = _donors()
    with pytest.raises(ValueError, match="at least 2"):
        l0_paste(m, x, y, condition="CAP", judges=[], donor_images=donors, donor_labels=donor_y, min_judges=1)
    with pytest.raises(ValueError, match="at least 3 judges"):
        l0_paste(m, x, y, condition="CAP", judges=[Matcher(1)], donor_images=donors, donor_labels=donor_y)
    with pytest.raises(ValueError, match="donor"):
        l0_paste(m, x, y, condition="CAP", judges=[Matcher(1), Matcher(2)])
    with pytest.raises(ValueError, match="CAP"):
        l0_paste(m, x, y, condition="CAI", judges=[Matcher(1), Matcher(2)], donor_images=donors, donor_labels=donor_y)


def test_sizes_follow_the_papers_distribution() -> None:
    k = draw_sizes(20000, 28, 28, torch.Generator().manual_seed(0), PAPER_MEAN_FRACTION, PAPER_SD_FRACTION, 0.0, 0.15)
    frac = k.double() / 784
    assert float(frac.mean()) == pytest.approx(PAPER_MEAN_FRACTION, abs=0.001)
    assert float(frac.std()) == pytest.approx(PAPER_SD_FRACTION, abs=0.001)
    assert int(k.max()) <= 117
    again = draw_sizes(
        50, 28, 28, torch.Generator().manual_seed(0), PAPER_MEAN_FRACTION, PAPER_SD_FRACTION, 0.015, 0.15
    )
    assert torch.equal(
        again,
        draw_sizes(50, 28, 28, torch.Generator().manual_seed(0), PAPER_MEAN_FRACTION, PAPER_SD_FRACTION, 0.015, 0.15),
    )
    assert int(again.min()) >= 12


def test_l0_sources_never_come_from_the_donor_slice() -> None:
    from app.attack_specs import get_spec
    from workers.attacks.l0_paste import DONOR_SLICE, donor_start
    from workers.generation.block import candidate_order

    spec = get_spec("l0_paste")
    assert spec.reserves_test == (0.5, 1.0) and donor_start(10000) == DONOR_SLICE.start == 5000
    order = candidate_order(0, 10000, [(5000, 10000)])
    assert sorted(order.tolist()) == list(range(5000))  # every other test image, in a seeded order
    assert donor_start(5000) == 2500  # e.g. the demo's offline fallback digits
    assert get_spec("l2_fixed").reserves_test is None and len(candidate_order(0, 10000, [])) == 10000


def test_two_judges_when_the_config_says_so() -> None:
    """The offline demo has no LeNet5: its config asks for min_judges = 2 openly (recorded with every stimulus)."""
    import json

    from workers.generation.generate import generate

    m = Matcher(0)
    x = _digits([1, 3], seed=6)
    imgs = (x[:, 0] * 255).round().to(torch.uint8).numpy()
    labels = m(x).argmax(1).numpy()
    donors, donor_y = _donors()
    kw = {"donor_images": donors, "donor_labels": donor_y}
    with pytest.raises(ValueError, match="at least 3 judges"):
        generate("mnist", "l0", "CAP", imgs, labels, [0, 1], m, 0, "cpu", judges=[Matcher(1)], **kw)
    rows = generate(
        "mnist",
        "l0",
        "CAP",
        imgs,
        labels,
        [0, 1],
        m,
        0,
        "cpu",
        judges=[Matcher(1)],
        attack_params={"min_judges": 2},
        **kw,
    )
    assert json.loads(rows[0]["metrics"]["params"])["min_judges"] == 2


def test_set_making_reads_external_judges_from_the_given_data_dir(data_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """make_stimuli(data_dir=...) must find the LeNet5 judge there even when $LPSTUDY_DATA_DIR is unset."""
    from workers.generation.make import _load_spec

    monkeypatch.delenv("LPSTUDY_DATA_DIR", raising=False)
    net = _load_spec("mnist-advertorch-lenet5", torch.device("cpu"), None, data_dir)
    assert str(net.model_id).startswith("mnist-advertorch-lenet5@")
