"""Attack batches sized to the device: the arithmetic, the CPU bound and the CUDA path (with the GPU calls
replaced: no GPU in these tests; the real measurement runs where CUDA exists)."""

from __future__ import annotations

import pytest
import torch

from workers.generation import sizing


def test_batch_limit_from_memory() -> None:
    assert sizing.batch_limit_from_memory(10_000, 100, headroom=0.5, cap=1000) == 50
    assert sizing.batch_limit_from_memory(10, 100, cap=1000) == 1  # at least one image
    assert sizing.batch_limit_from_memory(10**12, 100, cap=64) == 64
    assert sizing.batch_limit_from_memory(10**6, 0, cap=7) == 7


def test_cpu_gets_a_fixed_bound_capped_by_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LPSTUDY_ATTACK_BATCH", raising=False)
    monkeypatch.setattr(sizing, "available_ram", lambda: 64 * 2**30)
    assert sizing.attack_batch_size("cpu", None, (1, 28, 28)) == sizing.CPU_MAX
    monkeypatch.setattr(sizing, "available_ram", lambda: 2**20 * 100)  # 100 MiB free
    small = sizing.attack_batch_size("cpu", None, (3, 32, 32))
    assert 1 <= small < sizing.CPU_MAX and small == (2**20 * 100 // 4) // (3 * 32 * 32 * 4 * 400)
    monkeypatch.setenv("LPSTUDY_ATTACK_BATCH", "17")
    assert sizing.attack_batch_size("cpu") == 17


def test_cuda_sizes_from_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LPSTUDY_ATTACK_BATCH", raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (8 * 2**30, 16 * 2**30))
    monkeypatch.setattr(sizing, "probe_per_image_bytes", lambda model, shape, dev: 2**20)  # 1 MiB per image
    n = sizing.attack_batch_size("cuda", torch.nn.Identity(), (3, 32, 32))
    assert n == int(8 * 2**30 * sizing.HEADROOM // (2**20 * sizing.ATTACK_FACTOR))
    assert sizing.attack_batch_size("cuda", per_image_bytes=2**40) == 1
    with pytest.raises(ValueError, match="needs the model"):
        sizing.attack_batch_size("cuda")


def test_the_config_batch_size_does_not_size_attack_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block's images are attacked in device-sized chunks: chunking changes nothing but the batch shape."""
    import numpy as np

    from workers.generation.generate import generate

    class Lin(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(784, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    model = Lin().eval()
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    seen: list[int] = []
    orig = model.forward

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return orig(x)

    model.forward = spy  # type: ignore[method-assign]
    generate("mnist", "l0", "CB", imgs, [0] * 5, range(5), model, 0, "cpu", max_batch=2)
    assert seen[:3] == [2, 2, 1]
