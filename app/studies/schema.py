"""The study config file (TOML): schema, validation and error messages that name the field and line."""

from __future__ import annotations

import re
import tomllib
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.design import (
    CLASS_NAMES,
    CONDITIONS,
    DATASETS,
    Condition,
    Dataset,
    Norm,
    study_pair_problem,
)
from app.errors import ConfigError
from app.studies.generation import Generation, generation_problems, resolve_generation
from app.studies.strict import Strict

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
CODE_RE = re.compile(r"^[A-Za-z0-9]{2,64}$")

# The vocabulary lives in app.design; these names stay importable from here.
DEFAULT_LABELS: dict[str, list[str]] = {d: list(CLASS_NAMES[d]) for d in DATASETS}
ConditionCode = Condition
ALL_CONDITIONS: tuple[ConditionCode, ...] = CONDITIONS


class CompletionCodes(Strict):
    completed: str
    no_consent: str
    failed_attention: str
    # Prolific's code for "incompatible device", given to a participant whose window is narrower than
    # min_viewport_width (optional: without it they are asked to return the study).
    incompatible_device: str | None = None

    @field_validator("completed", "no_consent", "failed_attention", "incompatible_device")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v is not None and not CODE_RE.fullmatch(v):
            raise ValueError("a Prolific completion code is 2-64 letters or digits")
        return v


class AttentionChecks(Strict):
    """Instructed-response checks. Prolific allows flagging a participant only after two failures."""

    enabled: bool = True
    # 1-based positions among all trials (stimuli plus checks); default: spread evenly.
    positions: list[int] | None = None
    count: int = Field(default=2, ge=1, le=10)
    fail_threshold: int = Field(default=2, ge=2, le=10)

    @model_validator(mode="after")
    def _consistent(self) -> AttentionChecks:
        if self.positions is not None:
            if len(set(self.positions)) != len(self.positions):
                raise ValueError("positions must be distinct")
            self.count = len(self.positions)
        if self.fail_threshold > self.count:
            raise ValueError(
                f"fail_threshold ({self.fail_threshold}) cannot exceed the number of checks ({self.count})"
            )
        return self


class Texts(Strict):
    """Participant-facing texts. `{images}` and `{attention_checks}` are replaced by the config's numbers."""

    consent: str = Field(min_length=1)
    instructions: str = Field(min_length=1)


PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
# "25 images", "25 small images", "30 pictures of digits": a number of images written into a text.
IMAGE_COUNT_RE = re.compile(r"\b(\d+)\s+(?:[A-Za-z-]+\s+){0,2}?(?:images?|pictures?|photos?)\b", re.IGNORECASE)


def text_numbers(images: int, attention_checks: int) -> dict[str, str]:
    return {"images": str(images), "attention_checks": str(attention_checks)}


def fill_text(text: str, numbers: dict[str, str]) -> str:
    """The text with its placeholders replaced (unknown ones are refused when the config is read)."""
    return PLACEHOLDER_RE.sub(lambda m: numbers.get(m.group(1), m.group(0)), text)


MajorityTieRule = Literal["split", "incorrect", "exclude"]


class Analysis(Strict):
    """How the results are analysed (part of the preregistration: fixed before the data come in)."""

    # Participants who failed at least `attention_failure_threshold` attention checks are left out of the analysis.
    exclude_attention_failures: bool = True
    # Default: the study's attention_checks.fail_threshold (those whose status is failed_attention).
    attention_failure_threshold: int | None = Field(default=None, ge=1, le=10)
    # A tie for the most frequent answer on an image: "split" counts the image as correct with probability
    # 1/k when the true label is one of the k tied labels (the expected value of a fair coin), "incorrect"
    # counts every tie as not recognised, "exclude" leaves tied images out of majority-vote accuracy.
    majority_ties: MajorityTieRule = "split"
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    # The mixed-effects logistic model (variational Bayes, statsmodels); slow on very large studies.
    mixed_model: bool = True


class StudyConfig(Strict):
    slug: str
    title: str = Field(min_length=1, max_length=200)
    dataset: Dataset
    norm: Norm
    labels: list[str] | None = None
    trials_per_participant: int = Field(default=25, ge=1, le=500)
    scales: list[int] = Field(default_factory=lambda: [1, 2, 4])
    conditions: list[ConditionCode] = Field(default_factory=lambda: list(ALL_CONDITIONS))
    participants_per_condition: int = Field(ge=1, le=100000)
    timeout_minutes: int = Field(default=60, ge=1, le=24 * 60)
    # Refuse browsers whose window is narrower than this many CSS px, before assignment (None: any width).
    min_viewport_width: int | None = Field(default=None, ge=200, le=4000)
    completion_codes: CompletionCodes
    attention_checks: AttentionChecks | None = None
    texts: Texts
    generation: Generation | None = None
    analysis: Analysis = Field(default_factory=Analysis)

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("use 3-64 lowercase letters, digits and '-', not starting or ending with '-'")
        return v

    @field_validator("norm")
    @classmethod
    def _pair(cls, v: str, info: ValidationInfo) -> str:
        dataset = info.data.get("dataset")
        problem = study_pair_problem(dataset, v) if dataset is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(v) != 10:
            raise ValueError(f"exactly 10 label names are needed, got {len(v)}")
        if any(not s for s in v):
            raise ValueError("label names cannot be empty")
        if len(set(v)) != 10:
            raise ValueError("label names must be distinct")
        return v

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one display scale is needed")
        if any(s < 1 or s > 16 for s in v):
            raise ValueError("each display scale must be an integer from 1 to 16")
        if len(set(v)) != len(v):
            raise ValueError("display scales must be distinct")
        return v

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: list[ConditionCode]) -> list[ConditionCode]:
        if not v:
            raise ValueError("at least one condition (CB, CAI, CAP) is needed")
        if len(set(v)) != len(v):
            raise ValueError("conditions must be distinct")
        return v

    @field_validator("attention_checks")
    @classmethod
    def _attention_in_range(cls, ac: AttentionChecks | None, info: ValidationInfo) -> AttentionChecks | None:
        # A field validator (not the model validator) so that the error names attention_checks and its line.
        trials = info.data.get("trials_per_participant")
        if ac is not None and ac.enabled and ac.positions is not None and trials is not None:
            total = trials + ac.count
            bad = [p for p in ac.positions if p < 1 or p > total]
            if bad:
                raise ValueError(f"positions {bad} are outside 1..{total}")
        return ac

    @field_validator("texts")
    @classmethod
    def _texts_agree(cls, texts: Texts, info: ValidationInfo) -> Texts:
        """A text that states how many images there are must state the number the participant will see."""
        images = info.data.get("trials_per_participant")
        if images is None:
            return texts
        for name in ("consent", "instructions"):
            text = getattr(texts, name)
            for m in PLACEHOLDER_RE.finditer(text):
                if m.group(1) not in text_numbers(0, 0):
                    raise ValueError(
                        f"{name}: unknown placeholder {m.group(0)} (use {{images}} or {{attention_checks}})"
                    )
            for m in IMAGE_COUNT_RE.finditer(text):
                if int(m.group(1)) != images:
                    raise ValueError(
                        f"{name}: says '{m.group(0)}' but each participant labels {images} images "
                        "(trials_per_participant); write {images} to insert the number"
                    )
        return texts

    @model_validator(mode="after")
    def _cross(self) -> StudyConfig:
        if self.labels is None:
            self.labels = list(DEFAULT_LABELS[self.dataset])
        return self

    def filled_texts(self) -> tuple[str, str]:
        """(consent, instructions) as the participant reads them."""
        numbers = text_numbers(self.trials_per_participant, len(self.attention_positions()))
        return fill_text(self.texts.consent, numbers), fill_text(self.texts.instructions, numbers)

    @property
    def total_trials(self) -> int:
        return self.trials_per_participant + len(self.attention_positions())

    def attention_positions(self) -> list[int]:
        """0-based positions of attention checks among all trials."""
        ac = self.attention_checks
        if ac is None or not ac.enabled:
            return []
        if ac.positions is not None:
            return sorted(p - 1 for p in ac.positions)
        total = self.trials_per_participant + ac.count
        return [round((i + 1) * total / (ac.count + 1)) - 1 for i in range(ac.count)]

    def generation_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Attack choices that do not fit the study: ``(location, message)``."""
        if self.generation is None:
            return []
        return generation_problems(self.generation, self.norm, list(self.conditions))

    def resolve_generation(self) -> None:
        """Fill in the defaults (models, judges, images, every condition's attack with all its parameters), so
        that the stored config says exactly what the worker will do."""
        if self.generation is not None:
            resolve_generation(self.generation, self.dataset, self.norm, list(self.conditions))


def _line_of(source: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number (1-based) of the field at ``loc`` in the TOML source."""
    keys = [k for k in loc if isinstance(k, str)]
    if not keys:
        return None
    table, key = keys[:-1], keys[-1]
    current: list[str] = []
    header_line: int | None = None
    own_header_line: int | None = None  # the field is itself a table: its [header] line
    for n, raw in enumerate(source.splitlines(), start=1):
        line = raw.strip()
        m = re.match(r"^\[\s*([A-Za-z0-9_.\-]+)\s*\]", line)
        if m:
            current = m.group(1).split(".")
            if current == table:
                header_line = n
            if current == [*table, key] and own_header_line is None:
                own_header_line = n
            continue
        if current == table and re.match(rf"^{re.escape(key)}\s*=", line):
            return n
    return own_header_line or header_line


def _line_near(source: str, loc: tuple[Any, ...]) -> int | None:
    """The line of ``loc``, else of the nearest enclosing key (a value inside an inline table has no own line)."""
    loc = tuple(loc)
    while loc:
        line = _line_of(source, loc)
        if line is not None:
            return line
        loc = loc[:-1]
    return None


def parse_study_config(source: str, *, filename: str = "study.toml") -> StudyConfig:
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        line = m.group(1) if m else (len(source.splitlines()) or 1) if "end of document" in str(exc) else None
        where = f"{filename}:{line}" if line else filename
        raise ConfigError(f"{where}: not valid TOML: {exc}") from exc

    def report(loc: tuple[Any, ...], msg: str) -> str:
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_near(source, loc)
        where = f"{filename}:{line}" if line else filename
        return f"{where}: {field}: {msg}"

    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "this field is required"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling)"
            problems.append(report(tuple(err["loc"]), msg))
        raise ConfigError("Invalid study config:\n  " + "\n  ".join(problems)) from exc
    semantic = cfg.generation_problems()
    if semantic:
        raise ConfigError("Invalid study config:\n  " + "\n  ".join(report(loc, msg) for loc, msg in semantic))
    cfg.resolve_generation()
    return cfg
