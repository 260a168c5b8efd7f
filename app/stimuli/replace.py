"""Replacing a CAI or CAP stimulus with an uploaded image, checked against the study's budget."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.auth import AdminSession
from app.design import IMAGE_SHAPES
from app.errors import BadRequest, ConfigError, Conflict
from app.models import Stimulus, Study
from app.models.base import utcnow
from app.stimuli.budget import budget_problem
from app.stimuli.gallery import MAX_REASON, get_stimulus
from app.stimuli.images import conform, decode_png
from app.stimuli.service import add_stimulus

MAX_UPLOAD = 1024 * 1024


def _distances(benign: np.ndarray, adv: np.ndarray) -> dict[str, float | int]:
    d = adv.astype(np.float64) / 255.0 - benign.astype(np.float64) / 255.0
    changed = d != 0
    if changed.ndim == 3:
        changed = changed.any(axis=2)
    h, w = changed.shape
    return {
        "l0": int(changed.sum()),
        "l0_frac": float(changed.sum() / (h * w)),
        "l2": float(np.sqrt((d * d).sum())),
        "linf": float(np.abs(d).max()) if d.size else 0.0,
    }


def replace(
    session: Session, study: Study, stimulus_id: int, admin: AdminSession, data: bytes, filename: str, reason: str
) -> Stimulus:
    """Replace a CAI or CAP stimulus with an uploaded PNG of the same source image, checked against the study's
    budget around that image's CB stimulus. The old stimulus is excluded (kept for the trials that used it) and
    the new one takes its place in the pool. Nothing changes if any check fails."""
    old = get_stimulus(session, study, stimulus_id)
    code = old.condition.code
    reason = " ".join(reason.split())
    if not reason:
        raise BadRequest("give a reason for the replacement (it is logged and exported)")
    if len(reason) > MAX_REASON - 40:
        raise BadRequest(f"the reason is longer than {MAX_REASON - 40} characters")
    if code == "CB":
        raise Conflict("a CB stimulus is the dataset's image as it is: it cannot be replaced (exclude it instead)")
    if old.excluded_at is not None:
        raise Conflict(f"stimulus {old.id} is excluded; replace the stimulus now in the pool instead")
    if not data:
        raise ConfigError(f"{filename}: the file is empty")
    if len(data) > MAX_UPLOAD:
        raise ConfigError(f"{filename}: larger than {MAX_UPLOAD // 1024} KiB")
    pixels = conform(decode_png(data, what=filename), IMAGE_SHAPES[study.dataset], what=filename)
    cb = study.condition("CB")
    ref = None
    if cb is not None:
        ref = session.scalar(
            select(Stimulus)
            .where(Stimulus.condition_id == cb.id, Stimulus.image_index == old.image_index)
            .order_by(Stimulus.excluded_at.is_not(None), Stimulus.id)
            .limit(1)
        )
    if ref is None:
        raise ConfigError(
            f"no CB image for source image {old.image_index} in this study to check the {study.norm} budget against"
        )
    benign = decode_png(ref.png)
    problem = budget_problem(study.norm, benign, pixels)
    if problem:
        raise ConfigError(f"{filename}: outside the {study.norm} budget of this study: {problem}")
    if np.array_equal(benign, pixels):
        raise ConfigError(f"{filename}: is the CB image itself, not an adversarial image")
    old.excluded_at = utcnow()
    old.excluded_by = admin.email
    old.excluded_reason = f"replaced by an upload: {reason}"
    session.flush()  # the pool's unique index: the old one must leave before the new one enters
    new = add_stimulus(
        session,
        study,
        old.condition,
        image_index=old.image_index,
        label=old.label,
        pixels=pixels,
        extra={**_distances(benign, pixels), "budget_ok": True, "note": f"uploaded by {admin.email}: {reason}"},
        source="upload",
    )
    new.replaces_id = old.id
    session.flush()
    return new
