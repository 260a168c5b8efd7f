"""The `model` responder of `lpstudy bots`: a classifier's prediction on the PNG a page showed (torch)."""

from __future__ import annotations

import io
from pathlib import Path


class ModelPredictor:
    """PNG bytes -> (predicted label, its softmax probability), with a model that lpstudy can load."""

    def __init__(self, spec: str, *, device: str = "cpu", data_dir: Path | None = None) -> None:
        from workers.models.loading import load_model

        self.model = load_model(spec, device=device, data_dir=data_dir)
        self.model.eval()
        self.device = device
        self.model_id = getattr(self.model, "model_id", spec)

    def __call__(self, png: bytes) -> tuple[int, float]:
        import numpy as np
        import torch
        from PIL import Image

        img = Image.open(io.BytesIO(png))
        gray = img.mode in ("L", "LA", "1", "I;16") or getattr(self.model, "dataset", None) == "mnist"
        arr = np.asarray(img.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(arr)
        x = x[None, None] if gray else x.permute(2, 0, 1)[None]
        with torch.no_grad():
            probs = torch.softmax(self.model(x.to(self.device)), dim=1)[0]
        label = int(probs.argmax())
        return label, float(probs[label])
