"""Stimulus pools: import from a manifest, export, and serving PNGs by opaque id."""

from __future__ import annotations

import csv
import json
import math
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.contracts import StimulusResult
from app.design import CONDITIONS, IMAGE_SHAPES
from app.errors import ConfigError, NotFound
from app.exports import iso_utc
from app.models import Condition, SourceFailure, Stimulus, Study
from app.stimuli.budget import budget_problem
from app.stimuli.images import conform, decode_png, encode_png

REQUIRED_COLUMNS = ("condition", "image_index", "label", "path")
EXPORT_METRICS = ("model_pred", "l0", "l2", "linf", "ssim")
# Provenance columns that go to their own fields rather than the metrics JSON.
PROVENANCE = {"attack", "params", "seed", "model_id"}
# Columns of our own export that are not metrics of the image.
IGNORED = {"stimulus_id", "source", "sha256", "excluded_at", "excluded_reason", "replaces_stimulus_id"}


def _num(value: str) -> Any:
    """Manifest cell -> int, float, bool or the string itself; empty -> None."""
    v = value.strip()
    if v == "":
        return None
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        f = float(v)
    except ValueError:
        return v
    return f if math.isfinite(f) else v


def read_manifest(
    directory: Path,
    study: Study,
    existing: set[tuple[str, int]],
    benign: dict[int, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Parse and validate the whole manifest and every image before anything is written.

    A CAI or CAP image must keep the study's budget around the CB image of the same ``image_index``: the one
    in this manifest, else the one already in the study (``benign``, by image index).
    """
    manifest = directory / "manifest.csv"
    if not manifest.is_file():
        raise ConfigError(f"{manifest}: not found (the folder must hold manifest.csv)")
    shape = IMAGE_SHAPES[study.dataset]
    codes = {c.code for c in study.conditions}
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    seen: set[tuple[str, int]] = set()
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{manifest}: not UTF-8 text ({exc})") from exc
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ConfigError(
            f"{manifest}: missing column(s) {', '.join(missing)}; the header must include {','.join(REQUIRED_COLUMNS)}"
        )
    root = directory.resolve()
    for lineno, raw in enumerate(reader, start=2):
        where = f"manifest.csv line {lineno}"
        if None in raw:
            errors.append(f"{where}: more cells than header columns")
            continue
        cond = (raw["condition"] or "").strip()
        if cond not in CONDITIONS:
            errors.append(f"{where}: unknown condition '{cond}' (use {', '.join(CONDITIONS)})")
            continue
        if cond not in codes:
            errors.append(
                f"{where}: condition {cond} is not part of study '{study.slug}' "
                f"(its conditions: {', '.join(sorted(codes))})"
            )
            continue
        try:
            index = int((raw["image_index"] or "").strip())
            if index < 0:
                raise ValueError
        except ValueError:
            errors.append(f"{where}: image_index '{raw['image_index']}' is not a non-negative integer")
            continue
        try:
            label = int((raw["label"] or "").strip())
        except ValueError:
            errors.append(f"{where}: label '{raw['label']}' is not an integer")
            continue
        if not 0 <= label < len(study.labels):
            errors.append(f"{where}: label {label} is out of range 0-{len(study.labels) - 1}")
            continue
        key = (cond, index)
        if key in seen:
            errors.append(f"{where}: duplicate stimulus for condition {cond}, image_index {index}")
            continue
        if key in existing:
            errors.append(f"{where}: condition {cond}, image_index {index} is already in the study")
            continue
        seen.add(key)
        rel = (raw["path"] or "").strip()
        path = (directory / rel).resolve()
        if not rel or not path.is_relative_to(root):
            errors.append(f"{where}: path '{rel}' must be a file inside {directory}")
            continue
        if not path.is_file():
            errors.append(f"{where}: image file '{rel}' not found")
            continue
        try:
            pixels = conform(decode_png(path.read_bytes(), what=rel), shape, what=rel)
        except ConfigError as exc:
            errors.append(f"{where}: {exc.message}")
            continue
        extra = {k: _num(v or "") for k, v in raw.items() if k not in REQUIRED_COLUMNS and k not in IGNORED}
        rows.append(
            {"condition": cond, "image_index": index, "label": label, "pixels": pixels, "extra": extra, "line": lineno}
        )
    errors += _budget_errors(study, rows, benign or {})
    errors.sort(key=_line_of)
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise ConfigError("Nothing was imported:\n  " + "\n  ".join(shown))
    if not rows:
        raise ConfigError(f"{manifest}: has no stimulus rows; nothing was imported")
    return rows


def _line_of(message: str) -> int:
    try:
        return int(message.split("line ", 1)[1].split(":", 1)[0])
    except (IndexError, ValueError):
        return 0


def _budget_errors(study: Study, rows: list[dict[str, Any]], benign: dict[int, np.ndarray]) -> list[str]:
    """One message per adversarial row that has no CB image to compare with or that breaks the budget."""
    refs = dict(benign)
    refs.update({r["image_index"]: r["pixels"] for r in rows if r["condition"] == "CB"})
    errors = []
    for r in rows:
        if r["condition"] == "CB":
            continue
        where = f"manifest.csv line {r['line']}"
        ref = refs.get(r["image_index"])
        if ref is None:
            errors.append(
                f"{where}: no CB image for image_index {r['image_index']} to check the {study.norm} budget against; "
                "add its CB row to the manifest or import it first"
            )
            continue
        problem = budget_problem(study.norm, ref, r["pixels"])
        if problem:
            errors.append(f"{where}: {r['condition']} image {r['image_index']} is outside the budget: {problem}")
    return errors


def add_stimulus(
    session: Session,
    study: Study,
    condition: Condition,
    *,
    image_index: int,
    label: int,
    pixels,
    extra: dict[str, Any],
    source: str = "import",
) -> Stimulus:
    png = encode_png(pixels)
    metrics = {k: v for k, v in extra.items() if k not in PROVENANCE}
    params = extra.get("params")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError:
            params = {"raw": params}
    stim = Stimulus(
        study_id=study.id,
        condition_id=condition.id,
        image_index=image_index,
        label=label,
        public_id=secrets.token_urlsafe(12),
        png=png.png,
        width=png.width,
        height=png.height,
        channels=png.channels,
        sha256=png.sha256,
        metrics=metrics,
        source=source,
        attack=extra.get("attack") if isinstance(extra.get("attack"), str) else None,
        params=params if isinstance(params, dict) else None,
        seed=extra.get("seed") if isinstance(extra.get("seed"), int) else None,
        model_ref=str(extra["model_id"]) if extra.get("model_id") is not None else None,
    )
    session.add(stim)
    return stim


def add_generated_stimulus(
    session: Session, study: Study, condition: Condition, result: StimulusResult, *, position: int
) -> Stimulus:
    """Store a worker's stimulus (already validated) with its PNG bytes as made, and its provenance."""
    from app.stimuli.images import canonical

    png = canonical(result.png)
    stim = Stimulus(
        study_id=study.id,
        condition_id=condition.id,
        image_index=result.image_index,
        label=result.label,
        public_id=secrets.token_urlsafe(12),
        png=png.png,
        width=png.width,
        height=png.height,
        channels=png.channels,
        sha256=png.sha256,
        metrics={**result.metrics, "source_position": position},
        source="worker",
        attack=result.attack,
        params=result.params,
        seed=result.seed,
        model_ref=result.model_id,
    )
    session.add(stim)
    return stim


def import_stimuli(session: Session, study: Study, directory: Path) -> dict[str, int]:
    existing = {
        (code, idx)
        for code, idx in session.execute(
            select(Condition.code, Stimulus.image_index).join(Stimulus).where(Stimulus.study_id == study.id)
        )
    }
    benign = {
        int(idx): decode_png(png)
        for idx, png in session.execute(
            select(Stimulus.image_index, Stimulus.png)
            .join(Condition)
            .where(Stimulus.study_id == study.id, Condition.code == "CB")
        )
    }
    rows = read_manifest(directory, study, existing, benign)
    by_code = {c.code: c for c in study.conditions}
    counts: dict[str, int] = {}
    for r in rows:
        add_stimulus(
            session,
            study,
            by_code[r["condition"]],
            image_index=r["image_index"],
            label=r["label"],
            pixels=r["pixels"],
            extra=r["extra"],
        )
        counts[r["condition"]] = counts.get(r["condition"], 0) + 1
    session.flush()
    return counts


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return str(v)


def export_stimuli(session: Session, study: Study, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    stimuli = list(
        session.scalars(
            select(Stimulus).where(Stimulus.study_id == study.id).order_by(Stimulus.condition_id, Stimulus.image_index)
        )
    )
    codes = {c.id: c.code for c in study.conditions}
    extra_keys = sorted({k for s in stimuli for k in s.metrics} - set(EXPORT_METRICS))
    header = [
        "stimulus_id",
        "condition",
        "image_index",
        "label",
        "path",
        *EXPORT_METRICS,
        *extra_keys,
        "attack",
        "params",
        "seed",
        "model_id",
        "source",
        "sha256",
        # An excluded stimulus left the pool (an admin's decision, with the reason); answers on it are kept.
        "excluded_at",
        "excluded_reason",
        "replaces_stimulus_id",
    ]
    (out / "images").mkdir(exist_ok=True)
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for s in stimuli:
            code = codes[s.condition_id]
            rel = f"images/{code}_{s.image_index:05d}_{s.id}.png"
            (out / rel).write_bytes(s.png)
            row = [s.id, code, s.image_index, s.label, rel]
            row += [_cell(s.metrics.get(k)) for k in EXPORT_METRICS]
            row += [_cell(s.metrics.get(k)) for k in extra_keys]
            row += [_cell(s.attack), _cell(s.params), _cell(s.seed), _cell(s.model_ref), s.source, s.sha256]
            row += [iso_utc(s.excluded_at), _cell(s.excluded_reason), _cell(s.replaces_id)]
            w.writerow(row)
    export_failures(session, study, out / "failures.csv")
    return len(stimuli)


FAILURE_COLUMNS = ("image_index", "position", "label", "status", "condition", "reason", "metrics", "job_id")


def export_failures(session: Session, study: Study, path: Path) -> int:
    """``failures.csv``: the source images that did not enter the study, one row per failed condition."""
    rows = session.scalars(
        select(SourceFailure).where(SourceFailure.study_id == study.id).order_by(SourceFailure.position)
    )
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(FAILURE_COLUMNS)
        for f in rows:
            for cond, reason in sorted((f.reasons or {}).items()):
                metrics = (f.metrics or {}).get(cond)
                w.writerow(
                    [f.image_index, f.position, f.label, f.status, cond if cond in CONDITIONS else "", reason]
                    + [_cell(metrics), _cell(f.job_id)]
                )
                n += 1
    return n


def png_by_public_id(session: Session, public_id: str) -> tuple[bytes, str]:
    row = session.execute(select(Stimulus.png, Stimulus.sha256).where(Stimulus.public_id == public_id)).first()
    if row is None:
        raise NotFound("image not found")
    return row[0], row[1]
