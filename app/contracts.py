"""What crosses between the app and the worker, as typed models validated on both sides (no torch here).

* :class:`JobPayload`: what a generation job asks for. The app builds it from the study's resolved config and
  validates it before enqueueing; the worker validates it again when it claims the job.
* :class:`BlockResult`: what the worker made for the job's block of source images: per source image either a
  stimulus for every condition (a complete triple) or the failed attempts and their reasons. The worker builds
  it; the app-side writer (``app.jobs.service.record_block``) validates it again before writing anything.

The block grid and the seeds are defined here too, so that the worker and ``lpstudy stimuli make`` cut the
candidate order into the same blocks and give every block and condition the same seed: the same config and
seed then give byte-identical PNGs.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.attack_specs import get_spec
from app.design import CONDITIONS, NUM_CLASSES, Condition, Dataset, Norm, study_pair_problem


class _Contract(BaseModel):
    # Validated again whenever one side hands an instance to the other.
    model_config = ConfigDict(extra="forbid", revalidate_instances="always")


class AttackChoice(_Contract):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class JobPayload(_Contract):
    """One generation job: attack the source images at candidate positions ``[start, start + size)``."""

    version: Literal[2] = 2
    dataset: Dataset
    norm: Norm
    conditions: list[Condition] = Field(min_length=1)
    attacks: dict[Condition, AttackChoice]
    model: str = Field(min_length=1)
    judges: list[str] = Field(default_factory=list)
    seed: int = Field(ge=0, le=2**31 - 1)
    images: int = Field(ge=1)  # the study's number of source images (complete triples)
    batch_size: int = Field(ge=1)  # the block grid's first blocks (see block_bounds)
    block: int = Field(ge=0)
    start: int = Field(ge=0)
    size: int = Field(ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> JobPayload:
        problem = study_pair_problem(self.dataset, self.norm)
        if problem:
            raise ValueError(problem)
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError("conditions must be distinct")
        if set(self.attacks) != set(self.conditions):
            raise ValueError("attacks must name exactly one attack per condition")
        for cond, choice in self.attacks.items():
            spec = get_spec(choice.name)
            if not spec.serves(self.norm, cond):
                raise ValueError(f"attack {choice.name!r} does not make {cond} stimuli for the {self.norm} study")
            spec.validate_params(choice.params)
        if (self.start, self.size) != block_bounds(self.block, self.images, self.batch_size):
            raise ValueError(f"block {self.block} is not [{self.start}, {self.start + self.size}) on the grid")
        return self


class StimulusResult(_Contract):
    """One stimulus for one condition of a source image, as it is to be stored."""

    condition: Condition
    image_index: int = Field(ge=0)
    label: int = Field(ge=0, lt=NUM_CLASSES)
    png: bytes = Field(min_length=8)
    attack: str
    params: dict[str, Any]
    seed: int
    model_id: str | None
    metrics: dict[str, Any]

    @field_validator("png")
    @classmethod
    def _png(cls, v: bytes) -> bytes:
        if not v.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError("not a PNG")
        return v

    @field_validator("metrics")
    @classmethod
    def _flat(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k, x in v.items() if not (x is None or isinstance(x, bool | int | float | str))]
        if bad:
            raise ValueError(f"metrics must be flat JSON values; not: {bad}")
        return v


class FailedAttempt(_Contract):
    condition: Condition
    reason: str = Field(min_length=1)
    metrics: dict[str, Any] = Field(default_factory=dict)


class SourceOutcome(_Contract):
    """What became of one source image: a stimulus in every condition, or the attempts that failed."""

    image_index: int = Field(ge=0)
    position: int = Field(ge=0)
    label: int = Field(ge=0, lt=NUM_CLASSES)
    stimuli: list[StimulusResult] = Field(default_factory=list)
    failures: list[FailedAttempt] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failures

    @model_validator(mode="after")
    def _consistent(self) -> SourceOutcome:
        conds = [s.condition for s in self.stimuli]
        if len(set(conds)) != len(conds):
            raise ValueError("at most one stimulus per condition")
        if any(s.image_index != self.image_index or s.label != self.label for s in self.stimuli):
            raise ValueError("a stimulus belongs to another source image")
        if self.failures and self.stimuli:
            raise ValueError("a source image with a failed attempt keeps no stimuli")
        if not self.failures and not self.stimuli:
            raise ValueError("a source image needs its stimuli or the reasons it has none")
        return self


class BlockResult(_Contract):
    block: int = Field(ge=0)
    start: int = Field(ge=0)
    size: int = Field(ge=1)
    conditions: list[Condition]
    outcomes: list[SourceOutcome]
    model_id: str
    device: str
    seconds: float = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> BlockResult:
        positions = [o.position for o in self.outcomes]
        if sorted(positions) != list(range(self.start, self.start + len(positions))):
            raise ValueError("outcomes must cover consecutive positions from the block's start")
        if len(positions) > self.size:
            raise ValueError("more outcomes than the block holds")
        for o in self.outcomes:
            if o.complete and sorted(s.condition for s in o.stimuli) != sorted(self.conditions):
                raise ValueError(f"image {o.image_index}: a complete source image has a stimulus in every condition")
        return self


class BlockSummary(_Contract):
    """What a finished job stores in ``jobs.result``."""

    complete: list[int] = Field(default_factory=list)
    failed: list[dict[str, Any]] = Field(default_factory=list)  # {"image_index", "reasons": {condition: why}}
    skipped: list[int] = Field(default_factory=list)  # already in the study (a job run twice)
    surplus: list[int] = Field(default_factory=list)
    seconds: float = 0.0
    device: str | None = None
    worker: str | None = None


# --- the block grid and the seeds ------------------------------------------------------------------------


def top_up_size(batch_size: int) -> int:
    """Blocks after the first ones are smaller: they replace the few source images whose attacks failed."""
    return max(1, math.ceil(batch_size / 5))


def first_blocks(images: int, batch_size: int) -> int:
    return math.ceil(images / batch_size)


def block_bounds(block: int, images: int, batch_size: int) -> tuple[int, int]:
    """``(start, size)`` of block ``block`` in the candidate order: the first blocks cover ``images`` positions
    in blocks of ``batch_size``; after them come top-up blocks of ``top_up_size``. Fixed by the config alone,
    so every block gets the same images and seeds however many workers run and in whatever order."""
    k0 = first_blocks(images, batch_size)
    if block < k0:
        return block * batch_size, min(batch_size, images - block * batch_size)
    t = top_up_size(batch_size)
    return images + (block - k0) * t, t


def block_seed(seed: int, block: int, condition: str) -> int:
    """The seed of one condition's attack on one block (recorded with every stimulus)."""
    return (int(seed) * 1_000_003 + int(block)) * len(CONDITIONS) + CONDITIONS.index(condition)  # type: ignore[arg-type]


def block_payload(dataset: str, norm: str, conditions: list[str], generation: dict[str, Any], block: int) -> JobPayload:
    """The job for ``block`` of a study, from its resolved ``[generation]`` config (``StudyConfig.resolve_generation``).

    The web app enqueues these and ``lpstudy stimuli make`` runs the same ones in a loop.
    """
    images, batch_size = int(generation["images"]), int(generation["batch_size"])
    start, size = block_bounds(block, images, batch_size)
    return JobPayload.model_validate(
        {
            "dataset": dataset,
            "norm": norm,
            "conditions": list(conditions),
            "attacks": {c: generation["attacks"][c] for c in conditions},
            "model": generation["model"],
            "judges": list(generation.get("judges") or []),
            "seed": int(generation["seed"]),
            "images": images,
            "batch_size": batch_size,
            "block": block,
            "start": start,
            "size": size,
        }
    )
