"""The torch modules a run is made of: preprocessing, the trainer's network, and the exported head.

Preprocessing lives in the graph (``Encoder``) and the output transform too (``Exported``), so the ONNX model
takes raw feature values and returns what a person reads: probabilities or the prediction in label units.
Imported only in the child process: the daemon never loads torch.
"""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Raw numeric values and category codes -> one float feature vector, with training statistics folded in.

    Missing numbers (NaN) become the training mean; code 0 (an unseen or missing category) has its own slot.
    """

    def __init__(self, mean, std, vocabulary_sizes: list[int]):
        super().__init__()
        self.n_numeric = len(mean)
        self.n_categorical = len(vocabulary_sizes)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        widths = [size + 1 for size in vocabulary_sizes]
        offsets = [sum(widths[:i]) for i in range(len(widths))]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64))
        self.register_buffer("slots", torch.arange(sum(widths), dtype=torch.int64))
        self.out_features = self.n_numeric + sum(widths)

    def forward(self, numeric: torch.Tensor | None, codes: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.n_numeric:
            z = (numeric - self.mean) / self.std
            parts.append(torch.where(torch.isnan(z), torch.zeros_like(z), z))
        if self.n_categorical:
            # A one-hot by comparison with the slot numbers: plain ops that every ONNX runtime has.
            hits = (codes + self.offsets).unsqueeze(-1) == self.slots
            parts.append(hits.to(torch.float32).sum(dim=1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


class MLP(nn.Module):
    """The built-in trainer's network: encoder, then Linear/ReLU/Dropout layers, then the output layer."""

    def __init__(self, encoder: Encoder, layers: list[int], dropout: float, n_outputs: int):
        super().__init__()
        self.encoder = encoder
        blocks: list[nn.Module] = []
        width = encoder.out_features
        for size in layers:
            blocks += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        blocks.append(nn.Linear(width, n_outputs))
        self.body = nn.Sequential(*blocks)

    def forward(self, numeric, codes):
        return self.body(self.encoder(numeric, codes))


class Exported(nn.Module):
    """What is exported: the trainer's network plus the task's output transform, on the inputs that exist."""

    def __init__(self, net: nn.Module, task: str, has_numeric: bool, has_categorical: bool,
                 y_mean: float = 0.0, y_std: float = 1.0):
        super().__init__()
        self.net, self.task = net, task
        self.has_numeric, self.has_categorical = has_numeric, has_categorical
        self.y_mean, self.y_std = float(y_mean), float(y_std)

    def forward(self, first, second=None):
        numeric = first if self.has_numeric else None
        codes = (second if self.has_numeric else first) if self.has_categorical else None
        out = self.net(numeric, codes)
        if self.task == "binary":
            p = torch.sigmoid(out.reshape(-1, 1))
            return torch.cat([1 - p, p], dim=1)
        if self.task == "multiclass":
            return torch.softmax(out, dim=1)
        return out.reshape(-1, 1) * self.y_std + self.y_mean
