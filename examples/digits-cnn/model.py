"""A small CNN for scikit-learn's 8x8 digits, in the hub's package format.

``load("inference", device)`` returns a predictor whose ``predict(batch)`` maps an array of shape
(N, 8, 8) to class probabilities (N, 10); ``load("modify", device)`` returns the ``nn.Module``.
Weights come from the file that model.json's ``weights`` names, when there is one.
"""
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class DigitsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (N, 8, 8) -> (N, 1, 8, 8)
            x = x.unsqueeze(1)
        return self.head(self.features(x / 16.0))  # pixel values 0-16 -> 0-1


def _weights() -> Path | None:
    name = json.loads((HERE / "model.json").read_text()).get("weights")
    return HERE / name if name else None


class Predictor:
    def __init__(self, net: nn.Module, device: str) -> None:
        self.net, self.device = net.eval(), device

    @torch.no_grad()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(batch, dtype=np.float32), device=self.device)
        return torch.softmax(self.net(x), dim=1).cpu().numpy()


def load(mode: str, device: str = "cpu"):
    net = DigitsNet()
    weights = _weights()
    if weights is not None:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            net.load_state_dict(load_file(str(weights)))
        else:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.to(device)
    if mode == "modify":
        return net
    if mode == "inference":
        return Predictor(net, device)
    raise ValueError(f"mode must be inference or modify, not {mode!r}")
