"""The traffic simulator: inference requests with entity keys (features come from the online store), ground-truth
feedback for some of them (with the feedback token, as a label service elsewhere would send it), a few bad
requests, and drift injected after a while."""

from __future__ import annotations

import queue
import threading
import time

import httpx
import numpy as np


class Traffic(threading.Thread):
    def __init__(self, url: str, world, *, feedback_token: str, rate: float = 25.0, drift_after: float = 30.0,
                 seed: int = 11):
        super().__init__(name="demo-traffic", daemon=True)
        self.url = url.rstrip("/")
        self.feedback_auth = {"Authorization": f"Bearer {feedback_token}"}
        # Labels go out from a thread of their own: feedback is answered once stored (a writer cycle later), and
        # the requests' pace must not wait for that.
        self.labels: queue.Queue = queue.Queue(maxsize=1000)
        self.world = world
        self.rate = rate
        self.drift_after = drift_after
        self.rng = np.random.default_rng(seed)
        self.stop_event = threading.Event()
        self.sent = self.ok = self.bad_sent = self.errors = self.feedback = 0
        self.started_at = 0.0
        from .project import generator

        self.generator = generator()  # the same seeded world the training data came from

    def stop(self) -> None:
        self.stop_event.set()

    def request(self, drifting: bool) -> tuple[dict, np.ndarray]:
        rng, w = self.rng, self.world
        n = int(rng.integers(1, 4))
        card = rng.integers(0, w.cards, n)
        merchant = rng.integers(0, w.merchants, n)
        category = w.merchant_category[merchant].astype(object)
        amount = w.card_spend[card] * rng.lognormal(0, 0.7, n)
        if drifting:  # a new fraud ring: big online and electronics purchases
            amount = amount * 3
            category[:] = rng.choice(["online", "electronics", "jewelry"], size=n)
        p = self.probability(merchant, amount, category)
        body = {"inputs": [
            {"name": "card_id", "datatype": "INT64", "shape": [n], "data": (card + 1000).tolist()},
            {"name": "merchant_id", "datatype": "INT64", "shape": [n], "data": (merchant + 1).tolist()},
            {"name": "amount", "datatype": "FP32", "shape": [n], "data": np.round(amount, 2).tolist()},
            {"name": "categorical", "datatype": "BYTES", "shape": [n, 1], "data": [[c] for c in category]},
        ]}
        return body, p

    def probability(self, merchant, amount, category):
        return self.generator.fraud_probability(self.world, merchant, amount, np.zeros(len(merchant)), category)

    def run(self) -> None:
        self.started_at = time.monotonic()
        threading.Thread(target=self.send_feedback, name="demo-feedback", daemon=True).start()
        with httpx.Client(timeout=10) as client:
            while not self.stop_event.is_set():
                t0 = time.monotonic()
                drifting = t0 - self.started_at > self.drift_after
                try:
                    if self.rng.random() < 0.02:
                        self.bad_sent += 1
                        client.post(f"{self.url}/v2/models/fraud/infer", json={"inputs": [
                            {"name": "card_id", "datatype": "INT64", "shape": [1], "data": [1]}]})
                    else:
                        body, p = self.request(drifting)
                        r = client.post(f"{self.url}/v2/models/fraud/infer", json=body)
                        self.sent += 1
                        if r.status_code == 200:
                            self.ok += 1
                            if self.rng.random() < 0.5:
                                labels = (self.rng.random(len(p)) < p).astype(int).tolist()
                                try:
                                    self.labels.put_nowait({"request_id": r.json()["id"], "labels": labels})
                                except queue.Full:
                                    pass  # the daemon is behind: this label is one of many
                        else:
                            self.errors += 1
                except httpx.HTTPError:
                    self.errors += 1
                self.stop_event.wait(max(0.0, 1 / self.rate - (time.monotonic() - t0)))

    def send_feedback(self) -> None:
        """Post the queued labels to the serving port with the feedback token, as a label service would."""
        with httpx.Client(timeout=10, headers=self.feedback_auth) as client:
            while not self.stop_event.is_set():
                try:
                    body = self.labels.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    ok = client.post(f"{self.url}/v2/feedback", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.feedback += 1
                else:
                    self.errors += 1
