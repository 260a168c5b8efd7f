"""How many images an attack batch may hold on this device: sized to the device, not taken from the config.

A study's ``batch_size`` says how many source images one job covers; the worker then runs each attack on as
many of them at once as the device allows:

* **CUDA**: from the free memory (``torch.cuda.mem_get_info``) and a measured cost per image: one forward and
  backward pass of the model on a probe batch, times ``ATTACK_FACTOR`` (attacks keep several copies of the
  batch and its gradients, JSMA up to one per target class), keeping ``HEADROOM`` of the free memory unused;
* **CPU**: a fixed bound (``CPU_MAX``): past a few hundred small images a CPU gains nothing from larger
  batches and the attack's working set stops fitting in the caches; capped by a quarter of the available RAM.

The size never depends on the config, so a worker and ``lpstudy stimuli make`` on the same device split a
block the same way (and so make the same images).
"""

from __future__ import annotations

import os

import torch

CPU_MAX = 256
GPU_MAX = 8192
HEADROOM = 0.5  # use at most half the free GPU memory
ATTACK_FACTOR = 24  # attack working set per image, in units of one forward+backward pass


def batch_limit_from_memory(free_bytes: int, per_image_bytes: int, *, headroom: float = HEADROOM, cap: int) -> int:
    """Images that fit into ``free_bytes * headroom`` at ``per_image_bytes`` each, at least 1, at most ``cap``."""
    if per_image_bytes <= 0:
        return cap
    return int(max(1, min(cap, (free_bytes * headroom) // per_image_bytes)))


def available_ram() -> int | None:
    """Available system memory in bytes (Linux /proc/meminfo), None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def probe_per_image_bytes(model: torch.nn.Module, shape: tuple[int, int, int], device: torch.device, n: int = 8) -> int:
    """GPU memory one image costs in a forward and backward pass of ``model`` (measured on ``n`` images)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    x = torch.rand((n, *shape), device=device, requires_grad=True)
    model(x).sum().backward()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del x
    return max(1, (peak - before) // n)


def attack_batch_size(
    device: torch.device | str,
    model: torch.nn.Module | None = None,
    shape: tuple[int, int, int] | None = None,
    *,
    per_image_bytes: int | None = None,
) -> int:
    """The most images one attack call should hold on ``device`` (see the module docstring)."""
    dev = torch.device(device)
    override = os.environ.get("LPSTUDY_ATTACK_BATCH")
    if override:
        return max(1, int(override))
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        if per_image_bytes is None:
            if model is None or shape is None:
                raise ValueError("sizing a CUDA batch needs the model and the image shape (or per_image_bytes)")
            per_image_bytes = probe_per_image_bytes(model, shape, dev) * ATTACK_FACTOR
        return batch_limit_from_memory(free, per_image_bytes, cap=GPU_MAX)
    ram = available_ram()
    if ram is None or shape is None:
        return CPU_MAX
    c, h, w = shape
    # float32 working copies per image (a generous bound: a few hundred for the attack's state)
    per_image = c * h * w * 4 * 400
    return batch_limit_from_memory(ram, per_image, headroom=0.25, cap=CPU_MAX)
