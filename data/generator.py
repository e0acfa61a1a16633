"""Synthetic card transactions for the fraud demo, from a seeded generator.

Fraud here behaves the way it does in real card data, so the features the demo computes matter: compromised
cards make bursts of purchases within an hour (spend velocity), some merchants see far more fraud than others
(merchant risk), fraudulent amounts run high, and a few categories attract it. The label is drawn from those
signals with noise, so a model can learn it well but not perfectly. The same seed always gives the same rows.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CATEGORIES = ["grocery", "fuel", "restaurant", "online", "electronics", "travel", "jewelry", "pharmacy"]
CATEGORY_RISK = {"grocery": -0.6, "fuel": -0.2, "restaurant": -0.4, "online": 0.6, "electronics": 0.9,
                 "travel": 0.3, "jewelry": 1.2, "pharmacy": -0.5}
COLUMNS = ["tx_id", "card_id", "merchant_id", "merchant_category", "amount", "ts", "country", "is_fraud"]


@dataclass
class World:
    """The fixed parts of the synthetic world: cards, merchants and their risk."""

    seed: int = 7
    cards: int = 1500
    merchants: int = 200

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        self.merchant_category = rng.choice(CATEGORIES, size=self.merchants)
        self.merchant_risk = rng.normal(-0.5, 0.9, size=self.merchants)
        self.merchant_risk[rng.choice(self.merchants, size=self.merchants // 12, replace=False)] += 2.5
        self.card_spend = rng.lognormal(3.3, 0.6, size=self.cards)
        self.compromised = rng.random(self.cards) < 0.04


def fraud_probability(world: World, merchant: np.ndarray, amount: np.ndarray, burst: np.ndarray,
                      category: np.ndarray) -> np.ndarray:
    risk = np.array([CATEGORY_RISK[c] for c in category])
    z = -5.2 + 0.9 * world.merchant_risk[merchant] + 0.9 * np.log1p(amount / 60) + 1.8 * burst + risk
    return 1 / (1 + np.exp(-z))


def transactions(world: World, start: float, days: float, per_day: int, seed: int, drift: float = 0.0) -> dict:
    """Rows between ``start`` (epoch seconds) and ``start + days``. ``drift`` > 0 shifts amounts and categories."""
    rng = np.random.default_rng(seed)
    n = int(per_day * days)
    card = rng.integers(0, world.cards, n)
    ts = np.sort(start + rng.random(n) * days * 86400)
    # Compromised cards spend in bursts: extra purchases a few minutes apart.
    burst = np.zeros(n)
    hot = np.flatnonzero(world.compromised[card] & (rng.random(n) < 0.5))
    extra = []
    for i in hot:
        k = rng.integers(2, 6)
        extra.append((np.full(k, card[i]), ts[i] + np.cumsum(rng.exponential(240, k))))
        burst[i] = 1
    if extra:
        card = np.concatenate([card] + [c for c, _ in extra])
        ts = np.concatenate([ts] + [t for _, t in extra])
        burst = np.concatenate([burst, np.ones(sum(len(c) for c, _ in extra))])
        order = np.argsort(ts, kind="stable")
        card, ts, burst = card[order], ts[order], burst[order]
    n = len(card)
    merchant = rng.integers(0, world.merchants, n)
    category = world.merchant_category[merchant].astype(object)
    if drift:
        shift = rng.random(n) < drift
        category[shift] = rng.choice(["online", "electronics", "jewelry"], size=int(shift.sum()))
    amount = np.round(world.card_spend[card] * rng.lognormal(0, 0.7, n) * (1 + 2.5 * burst) * (1 + drift * 2), 2)
    p = fraud_probability(world, merchant, amount, burst, category)
    label = (rng.random(n) < p).astype(int)
    country = np.where(rng.random(n) < 0.9, "DE", rng.choice(["FR", "NL", "US", "GB"], size=n))
    return {"tx_id": np.arange(n) + seed * 10_000_000, "card_id": card + 1000, "merchant_id": merchant + 1,
            "merchant_category": category, "amount": amount, "ts": ts, "country": country, "is_fraud": label}


def write_csv(rows: dict, path: Path, bad_rows: int = 0, seed: int = 0) -> int:
    """Write rows as CSV; ``bad_rows`` of them are spoiled the ways real feeds spoil them (for the quarantine)."""
    rng = np.random.default_rng(seed)
    n = len(rows["tx_id"])
    spoil = set(rng.choice(n, size=min(bad_rows, n), replace=False).tolist()) if bad_rows else set()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i in range(n):
            row = [int(rows["tx_id"][i]), int(rows["card_id"][i]), int(rows["merchant_id"][i]),
                   rows["merchant_category"][i], f"{rows['amount'][i]:.2f}", _iso(rows["ts"][i]),
                   rows["country"][i], int(rows["is_fraud"][i])]
            if i in spoil:
                fault = i % 3
                if fault == 0:
                    row[4] = f"-{row[4]}"      # a refund booked as a purchase: negative amount
                elif fault == 1:
                    row[6] = "??"              # an unknown country code
                else:
                    row[1] = ""                # a card id lost upstream
            w.writerow(row)
    return n


def _iso(ts: float) -> str:
    whole = math.floor(ts)
    return np.datetime64(int(whole), "s").astype(str).replace("T", " ")


def generate(directory: Path, *, now: float, days: int = 10, per_day: int = 4000, seed: int = 7,
             bad_per_file: int = 12) -> dict:
    """One CSV per day ending at ``now`` under ``directory``; returns counts for the demo's summary."""
    world = World(seed=seed)
    total = 0
    for d in range(days):
        start = now - (days - d) * 86400
        rows = transactions(world, start, 1.0, per_day, seed=seed * 1000 + d)
        total += write_csv(rows, directory / f"day-{d:02d}.csv", bad_rows=bad_per_file, seed=d)
    return {"files": days, "rows": total, "bad_rows": days * bad_per_file}
