"""Imported CAI/CAP images (hand-made CAP included) must keep the study's budget around their CB image."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.errors import ConfigError
from app.models import Stimulus
from app.stimuli.budget import budget_problem
from app.stimuli.service import import_stimuli
from app.studies.service import create_study, get_study

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _pool(d: Path, rows: list[tuple[str, int, np.ndarray]]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with (d / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["condition", "image_index", "label", "path"])
        for n, (cond, idx, px) in enumerate(rows):
            Image.fromarray(px).save(d / f"{n}.png")
            w.writerow([cond, idx, 3, f"{n}.png"])
    return d


def _study(db, toml_for, slug: str, dataset: str = "mnist", norm: str = "l0") -> str:  # type: ignore[no-untyped-def]
    src = toml_for(slug=slug, trials=1, conditions=("CB", "CAI", "CAP"))
    src = src.replace('dataset = "mnist"', f'dataset = "{dataset}"').replace('norm = "l0"', f'norm = "{norm}"')
    with db.session() as s:
        create_study(s, src)
    return slug


def _import(db, slug: str, d: Path) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return import_stimuli(s, get_study(s, slug), d)


def _count(db) -> int:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Stimulus)) or 0


def _digit() -> np.ndarray:
    px = np.zeros((28, 28), np.uint8)
    px[6:22, 12:16] = 255
    return px


def _changed(px: np.ndarray, n: int) -> np.ndarray:
    out = px.copy()
    out.flat[:n] = 200  # the first n pixels (top rows, black in the digit) turn grey
    return out


def test_hand_made_cap_is_checked_against_the_cb_image(db, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slug = _study(db, toml_for, "l0-hand")
    cb = _digit()
    d = _pool(tmp_path / "p", [("CB", 7, cb), ("CAI", 7, _changed(cb, 3))])
    assert _import(db, slug, d) == {"CB": 1, "CAI": 1}
    # later, a hand-made CAP for the same image: checked against the CB image already in the study
    with pytest.raises(ConfigError, match=r"line 2: CAP image 7 is outside the budget: it changes 118 pixels"):
        _import(db, slug, _pool(tmp_path / "p2", [("CAP", 7, _changed(cb, 118))]))
    assert _count(db) == 2
    assert _import(db, slug, _pool(tmp_path / "p3", [("CAP", 7, _changed(cb, 117))])) == {"CAP": 1}


@sqlite_only
def test_over_budget_and_unreferenced_rows_import_nothing(db, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slug = _study(db, toml_for, "l0-bad")
    cb = _digit()
    d = _pool(
        tmp_path / "p",
        [("CB", 1, cb), ("CAP", 1, _changed(cb, 200)), ("CAI", 2, _changed(cb, 3)), ("CAI", 1, _changed(cb, 4))],
    )
    with pytest.raises(ConfigError) as info:
        _import(db, slug, d)
    msg = info.value.message
    assert "line 3: CAP image 1 is outside the budget: it changes 200 pixels (25.5%); the L0 budget is 117" in msg
    assert "line 4: no CB image for image_index 2 to check the l0 budget against" in msg
    assert "line 5" not in msg
    assert _count(db) == 0


@sqlite_only
@pytest.mark.parametrize(
    "norm,levels,ok",
    [("linf", 25, True), ("linf", 26, False), ("l2", 100, True), ("l2", 101, False), ("l2", 0, False)],
)
def test_cifar_budgets(db, toml_for, tmp_path, norm: str, levels: int, ok: bool) -> None:  # type: ignore[no-untyped-def]
    slug = _study(db, toml_for, f"c-{norm}-{levels}", dataset="cifar10", norm=norm)
    cb = np.full((32, 32, 3), 100, np.uint8)
    adv = cb.copy()
    if norm == "linf":
        adv[0, 0, 0] += levels
    else:
        # 234 channel values moved by 100 levels: L2 = sqrt(234) * 100 / 255 = 5.9988 (inside 5.99-6.01);
        # by 101 levels it is 6.0588, by 0 levels 0
        adv.flat[:234] += levels
    d = _pool(tmp_path / "p", [("CB", 0, cb), ("CAP", 0, adv)])
    if ok:
        assert _import(db, slug, d) == {"CB": 1, "CAP": 1}
    else:
        with pytest.raises(ConfigError, match="line 3: CAP image 0 is outside the budget"):
            _import(db, slug, d)
        assert _count(db) == 0


def test_budget_problem_rules() -> None:
    cb = np.zeros((28, 28), np.uint8)
    assert budget_problem("l0", cb, _changed(cb, 117)) is None
    assert "118 pixels" in (budget_problem("l0", cb, _changed(cb, 118)) or "")
    rgb = np.zeros((4, 4, 3), np.uint8)
    two_channels = rgb.copy()
    two_channels[0, 0, :2] = 9
    assert (
        budget_problem("l0", np.zeros((20, 20, 3), np.uint8), np.pad(two_channels, ((0, 16), (0, 16), (0, 0)))) is None
    )
    assert "shape" in (budget_problem("linf", cb, rgb) or "")
