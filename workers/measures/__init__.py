"""Image measures: exact Lp budgets after 8-bit rounding, SSIM and the per-stimulus metrics (torch)."""
