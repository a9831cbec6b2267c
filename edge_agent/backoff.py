"""Exponential backoff with jitter, reset after a success."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``min * 2**n`` capped at ``max``, each drawn uniformly from its upper half."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.min_s * (2 ** min(self._attempt, 62)))
        self._attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
