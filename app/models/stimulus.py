from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow

if TYPE_CHECKING:
    from app.models.study import Condition


class Stimulus(Base):
    __tablename__ = "stimuli"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    condition_id: Mapped[int] = mapped_column(ForeignKey("conditions.id", ondelete="CASCADE"), index=True)
    # Index of the source image in the dataset's test split.
    image_index: Mapped[int]
    # The true label (0-9) of the source image.
    label: Mapped[int]
    # Opaque random id used in participant-facing image URLs.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    png: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    width: Mapped[int]
    height: Mapped[int]
    channels: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    # Every metric known for the image (l0, l2, linf, ssim, model_pred, ...).
    metrics: Mapped[dict[str, Any]]
    # Provenance: "import" or "worker", attack name and parameters, seed, model id.
    source: Mapped[str] = mapped_column(String(16), default="import")
    attack: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any] | None]
    seed: Mapped[int | None]
    model_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # An excluded stimulus leaves the pool: participants assigned from then on never get it; trials already
    # assigned keep it (and their answers). Set by an admin, with the reason, or by a replacement.
    excluded_at: Mapped[dt.datetime | None]
    excluded_by: Mapped[str | None] = mapped_column(String(254))
    excluded_reason: Mapped[str | None] = mapped_column(String(500))
    # The stimulus this one replaced (an admin upload for the same source image).
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("stimuli.id", ondelete="SET NULL"))

    condition: Mapped[Condition] = relationship(back_populates="stimuli")

    # One stimulus in the pool per condition and source image; excluded ones (kept for the trials that used them)
    # do not count, so that a replacement can take the same image_index.
    __table_args__ = (
        Index(
            "uq_stimuli_condition_id_image_index_pool",
            "condition_id",
            "image_index",
            unique=True,
            sqlite_where=text("excluded_at IS NULL"),
            postgresql_where=text("excluded_at IS NULL"),
        ),
    )
