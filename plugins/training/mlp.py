"""The built-in trainer: torch tabular MLPs for binary and multiclass classification and regression.

``fit(ctx)`` runs in the child process and is written like a hand-written loop (tensors on the device, a seeded
permutation per epoch, no DataLoader), so the framework's cost over plain torch is the metric buffer alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .spec import lower_is_better


@dataclass(frozen=True)
class Trainer:
    """A trainer as ``register_trainers`` expects it (any object with these attributes will do)."""

    name: str
    fit: Any
    tasks: tuple[str, ...]
    hyperparameters: dict = field(default_factory=dict)
    description: str = ""


HYPERPARAMETERS = {
    "layers": [64, 32], "dropout": 0.1, "lr": 1e-3, "weight_decay": 0.0, "batch_size": 256, "epochs": 10,
    "patience": 3, "early_stopping_metric": "val_loss", "class_weight": "none",
}


def fit(ctx):
    """Train an MLP on ``ctx``'s data; returns the network with the best validation score."""
    import torch

    from .nets import MLP

    hp = ctx.hp
    if hp["class_weight"] not in ("none", "balanced"):
        raise ValueError(f"class_weight must be 'none' or 'balanced', got {hp['class_weight']!r}")
    device = ctx.device
    model = MLP(ctx.encoder, [int(s) for s in hp["layers"]], float(hp["dropout"]), ctx.n_outputs).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]))
    loss_fn = make_loss(ctx, hp["class_weight"], device)
    gen = torch.Generator().manual_seed(ctx.seed)
    xn, xc, y = ctx.tensors("train")
    stop_on, minimize = hp["early_stopping_metric"], lower_is_better(hp["early_stopping_metric"])
    epoch, step, best, best_state, bad = 0, 0, None, None, 0
    if ctx.resume is not None:
        state = ctx.resume["state"]
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        epoch, step, best, best_state, bad = ctx.resume["epoch"], ctx.resume["step"], state["best"], \
            state["best_state"], state["bad"]
    amp = device.type == "cuda" and ctx.mixed_precision
    n, batch, epochs = len(y), int(hp["batch_size"]), int(hp["epochs"])
    while epoch < epochs and bad < int(hp["patience"]):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch):
            idx = perm[start: start + batch]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(model(xn[idx], xc[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % ctx.log_every == 0:
                ctx.log_metrics(step, {"train_loss": loss.item()})
        epoch += 1
        metrics = ctx.validate(model)
        score = metrics[stop_on]
        if best is None or (score < best if minimize else score > best):
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        ctx.end_epoch(epoch, step, metrics, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
            "rng": torch.get_rng_state(), "best": best, "best_state": best_state, "bad": bad})
    model.load_state_dict(best_state)
    return model


def make_loss(ctx, class_weight: str, device):
    """The task's loss; ``balanced`` weighs each class by its rarity (for rare labels such as fraud)."""
    import torch
    from torch import nn

    counts = ctx.class_counts
    if ctx.task == "regression":
        return nn.MSELoss()
    if ctx.task == "binary":
        pos_weight = None
        if class_weight == "balanced" and counts[1]:
            pos_weight = torch.tensor([counts[0] / counts[1]], device=device)
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        return lambda out, y: bce(out.reshape(-1), y)
    weight = None
    if class_weight == "balanced":
        total = sum(counts)
        weight = torch.tensor([total / (len(counts) * max(c, 1)) for c in counts], device=device)
    return nn.CrossEntropyLoss(weight=weight)


MLP_TRAINER = Trainer("mlp", fit, ("binary", "multiclass", "regression"), HYPERPARAMETERS,
                      "torch tabular MLP: layers, dropout, Adam, early stopping, class weights")
