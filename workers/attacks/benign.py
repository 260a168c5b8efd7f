"""The benign condition (CB) as an attack: the source image unchanged, kept when the model classifies it."""

from __future__ import annotations

from typing import Any

import torch

from workers.attacks.base import AttackResult, register
from workers.attacks.common import predict
from workers.measures.budgets import to_uint8


@register("benign")
def benign(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    condition: str = "CB",
    generator: torch.Generator | None = None,
    **_: Any,
) -> AttackResult:
    if condition != "CB":
        raise ValueError("the benign identity makes CB stimuli only")
    x_u8 = to_uint8(x)
    ok = predict(model, x_u8.float() / 255.0) == y.to(x.device).long()
    n = x.shape[0]
    return AttackResult(
        adv_u8=x_u8,
        success=ok,
        target=torch.full((n,), -1, dtype=torch.long, device=x.device),
        iterations=torch.zeros(n, dtype=torch.long, device=x.device),
        notes=["" if bool(o) else "the model misclassifies the source image" for o in ok],
    )
