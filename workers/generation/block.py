"""One block of source images through every condition: the unit of work of the worker and of ``stimuli make``.

The study's candidates are the test images in a seeded random order (``candidate_order``), less any test
images an attack reserves as material. A block is a run of consecutive candidates (``app.contracts``'s grid).
Each candidate goes through the conditions in turn: first the benign check (CB: the model must classify the
source image correctly), then CAI, then CAP; a candidate that fails one is not attacked further and is
reported with its reason, and only a candidate that succeeded in every condition comes back as a complete
triple (one stimulus per condition). Every condition's attack gets its own seed (``block_seed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.attack_specs import get_spec
from app.contracts import (
    AttackChoice,
    BlockResult,
    FailedAttempt,
    JobPayload,
    SourceOutcome,
    StimulusResult,
    block_seed,
)
from app.design import CONDITIONS, IMAGE_SHAPES
from app.stimuli.images import encode_png
from workers.generation.generate import PROVENANCE, generate, model_id_of, resolve_device
from workers.generation.sizing import attack_batch_size

# The benign check every candidate passes first, even in a study without a CB condition.
BENIGN = AttackChoice(name="benign")


def reserved_ranges(payload: JobPayload, n_test: int) -> list[tuple[int, int]]:
    """The test-set index ranges the payload's attacks reserve as material (their specs give fractions)."""
    out = []
    for choice in payload.attacks.values():
        r = get_spec(choice.name).reserves_test
        if r is not None:
            out.append((int(round(r[0] * n_test)), int(round(r[1] * n_test))))
    return out


def candidate_order(seed: int, n_test: int, reserved: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Test-set indices in the study's seeded random order, without the reserved ranges."""
    order = np.random.default_rng(int(seed)).permutation(n_test)
    if reserved:
        keep = np.ones(n_test, dtype=bool)
        for a, b in reserved:
            keep[max(0, a) : min(n_test, b)] = False
        order = order[keep[order]]
    return order.astype(np.int64)


@dataclass
class BlockInputs:
    """What a block needs besides its payload: models, data and the device. Loaded once, reused per block."""

    model: torch.nn.Module
    test_images: np.ndarray
    test_labels: np.ndarray
    judges: list[torch.nn.Module] = field(default_factory=list)
    device: str | torch.device = "auto"
    data_dir: str | Path | None = None
    train: tuple[np.ndarray, np.ndarray] | None = None
    max_batch: int | None = None  # None: sized to the device (workers.generation.sizing)
    _orders: dict[tuple[int, tuple[tuple[int, int], ...]], np.ndarray] = field(default_factory=dict)

    def candidates(self, payload: JobPayload) -> np.ndarray:
        reserved = tuple(reserved_ranges(payload, len(self.test_labels)))
        key = (payload.seed, reserved)
        if key not in self._orders:
            self._orders[key] = candidate_order(payload.seed, len(self.test_labels), list(reserved))
        return self._orders[key]

    def donors(self, payload: JobPayload) -> tuple[np.ndarray, np.ndarray] | None:
        ranges = reserved_ranges(payload, len(self.test_labels))
        if not ranges:
            return None
        a, b = ranges[0]
        return self.test_images[a:b], np.asarray(self.test_labels[a:b]).astype(np.int64)


def _failure_metrics(m: dict[str, Any]) -> dict[str, Any]:
    keep = ("l0", "l0_frac", "l2", "linf", "ssim", "model_pred", "target", "iterations", "attack", "seed")
    return {k: m.get(k) for k in keep if m.get(k) is not None}


def make_block(
    payload: JobPayload,
    inputs: BlockInputs,
    *,
    on_condition: Callable[[str], None] | None = None,
) -> BlockResult:
    """Attack the block's candidates in every condition; see the module docstring."""
    payload = JobPayload.model_validate(payload)
    t0 = time.perf_counter()
    dev = resolve_device(inputs.device)
    model = inputs.model.to(dev).eval()
    candidates = inputs.candidates(payload)
    stop = min(payload.start + payload.size, len(candidates))
    positions = list(range(payload.start, stop))
    idx = candidates[payload.start : stop]
    labels = np.asarray(inputs.test_labels).astype(np.int64)
    max_batch = inputs.max_batch
    if max_batch is None:
        h, w, c = IMAGE_SHAPES[payload.dataset]
        max_batch = attack_batch_size(dev, model, (c, h, w))
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    failures: dict[int, list[FailedAttempt]] = {i: [] for i in range(len(idx))}
    alive = list(range(len(idx)))
    order = ["CB"] + [c for c in CONDITIONS if c != "CB" and c in payload.conditions]
    donors = inputs.donors(payload)
    for cond in order:
        if not alive:
            break
        choice = payload.attacks.get(cond, BENIGN)  # type: ignore[call-overload]
        sel = idx[alive]
        ref_l0 = [int(r["metrics"]["l0"]) for r in rows.get("CAI", {}).values()] if cond == "CAP" else None
        out = generate(
            payload.dataset,
            payload.norm,
            cond,
            inputs.test_images[sel],
            labels[sel],
            sel,
            model,
            block_seed(payload.seed, payload.block, cond),
            dev,
            attack=choice.name,
            attack_params=choice.params,
            judges=inputs.judges,
            train_images=inputs.train[0] if inputs.train else None,
            train_labels=inputs.train[1] if inputs.train else None,
            donor_images=donors[0] if donors else None,
            donor_labels=donors[1] if donors else None,
            reference_l0=ref_l0,
            data_dir=inputs.data_dir,
            max_batch=max_batch,
            positions=[positions[i] for i in alive],
        )
        rows[cond] = {}
        survivors = []
        for local, r in zip(alive, out, strict=True):
            if r["success"]:
                rows[cond][local] = r
                survivors.append(local)
            else:
                reason = r["metrics"].get("note") or "attack failed"
                attempt = FailedAttempt(condition=cond, reason=reason, metrics=_failure_metrics(r["metrics"]))  # type: ignore[arg-type]
                failures[local].append(attempt)
        alive = survivors
        if on_condition is not None:
            on_condition(cond)
    outcomes = []
    for local in range(len(idx)):
        common = {"image_index": int(idx[local]), "position": positions[local], "label": int(labels[idx[local]])}
        if failures[local]:
            outcomes.append(SourceOutcome(**common, failures=failures[local]))
            continue
        stimuli = []
        for cond in payload.conditions:
            r = rows[cond][local]
            m = r["metrics"]
            stimuli.append(
                StimulusResult(
                    condition=cond,
                    image_index=r["image_index"],
                    label=r["label"],
                    png=encode_png(r["image"]).png,
                    attack=m["attack"],
                    params=_json(m["params"]),
                    seed=int(m["seed"]),
                    model_id=m["model_id"],
                    metrics={k: v for k, v in m.items() if k not in PROVENANCE},
                )
            )
        outcomes.append(SourceOutcome(**common, stimuli=stimuli))
    return BlockResult(
        block=payload.block,
        start=payload.start,
        size=payload.size,
        conditions=payload.conditions,
        outcomes=outcomes,
        model_id=model_id_of(model) or "model",
        device=str(dev),
        seconds=round(time.perf_counter() - t0, 3),
    )


def _json(s: str | None) -> dict[str, Any]:
    import json

    v = json.loads(s) if s else {}
    return v if isinstance(v, dict) else {"value": v}
