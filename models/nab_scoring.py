"""NAB-compatible scoring (Numenta Anomaly Benchmark v1.1), written from the description in
/work/shared/data/nab/SCORING.md: probationary period, scaled-sigmoid sweep scores, one corpus-wide
threshold optimised per profile, normalisation against the null and perfect detectors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict


class CostProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


STANDARD = CostProfile(name="standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FP = CostProfile(name="reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
LOW_FN = CostProfile(name="reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
PROFILES = (STANDARD, LOW_FP, LOW_FN)


def scaled_sigmoid(y: float) -> float:
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n_rows: int) -> int:
    return min(math.floor(0.15 * n_rows), 750)


@dataclass(frozen=True, slots=True)
class ScoredFile:
    """One file's detector output and windows (row indices, both ends inclusive, sorted)."""

    name: str
    scores: np.ndarray
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class _Rows:
    scores: np.ndarray  # scored rows only (i >= P)
    window: np.ndarray  # corpus-unique window id, -1 outside windows
    sweep: np.ndarray


def _file_rows(f: ScoredFile, profile: CostProfile, window_base: int) -> _Rows:
    n = int(f.scores.shape[0])
    sweep = np.empty(n)
    wid = np.full(n, -1, dtype=np.int64)
    a_first = scaled_sigmoid(-1.0)
    prev_right: int | None = None
    prev_width = 0
    k = 0
    windows = f.windows
    i = 0
    while i < n:
        if k < len(windows) and i == windows[k][0]:
            s, e = windows[k]
            w = e - s + 1
            for j in range(s, min(e, n - 1) + 1):
                y = -(e - j + 1) / w
                sweep[j] = profile.tp_weight * scaled_sigmoid(y) / a_first
                wid[j] = window_base + k
            prev_right, prev_width = e, w
            k += 1
            i = e + 1
            continue
        if prev_right is None:
            sweep[i] = -profile.fp_weight
        else:
            y = abs(prev_right - i) / max(prev_width - 1, 1)
            sweep[i] = profile.fp_weight * scaled_sigmoid(y)
        i += 1
    p = probation_rows(n)
    return _Rows(scores=np.asarray(f.scores[p:], dtype=np.float64), window=wid[p:], sweep=sweep[p:])


class CorpusResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    profile: str
    threshold: float
    raw: float
    score: float  # normalised 0..100 (can be negative)
    windows: int


class _Corpus:
    def __init__(self, files: Sequence[ScoredFile], profile: CostProfile) -> None:
        parts: list[_Rows] = []
        base = 0
        self.n_windows = 0
        for f in files:
            for s, e in f.windows:
                if not (0 <= s <= e < f.scores.shape[0]):
                    raise ValueError(f"{f.name}: window {s}..{e} outside the file")
            parts.append(_file_rows(f, profile, base))
            base += len(f.windows)
            self.n_windows += len(f.windows)
        self.profile = profile
        self.scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0)
        self.window = np.concatenate([p.window for p in parts]) if parts else np.zeros(0, np.int64)
        self.sweep = np.concatenate([p.sweep for p in parts]) if parts else np.zeros(0)
        if np.any((self.scores < 0.0) | (self.scores > 1.0)) or not np.all(np.isfinite(self.scores)):
            raise ValueError("anomaly scores must lie in [0, 1]")
        self.scored_windows = int(np.unique(self.window[self.window >= 0]).size)

    def raw_at(self, threshold: float) -> float:
        det = self.scores >= threshold
        fp = float(self.sweep[det & (self.window < 0)].sum())
        in_win = det & (self.window >= 0)
        best: dict[int, float] = {}
        for w, v in zip(self.window[in_win].tolist(), self.sweep[in_win].tolist(), strict=True):
            if v > best.get(w, -math.inf):
                best[w] = v
        missed = self.scored_windows - len(best)
        return sum(best.values()) - self.profile.fn_weight * missed + fp

    def optimise(self) -> tuple[float, float]:
        """Best (threshold, raw); candidates 1.1 and every scored value; ties -> highest threshold."""
        prof = self.profile
        best_t, best_raw = 1.1, -prof.fn_weight * self.scored_windows
        order = np.argsort(-self.scores, kind="stable")
        sc = self.scores[order]
        win = self.window[order]
        sw = self.sweep[order]
        win_best: dict[int, float] = {}
        tp_sum = 0.0
        fp_sum = 0.0
        i = 0
        n = sc.shape[0]
        while i < n:
            t = sc[i]
            while i < n and sc[i] == t:
                w = int(win[i])
                if w < 0:
                    fp_sum += sw[i]
                else:
                    old = win_best.get(w)
                    if old is None:
                        win_best[w] = sw[i]
                        tp_sum += sw[i]
                    elif sw[i] > old:
                        win_best[w] = sw[i]
                        tp_sum += sw[i] - old
                i += 1
            raw = tp_sum + fp_sum - prof.fn_weight * (self.scored_windows - len(win_best))
            if raw > best_raw:
                best_t, best_raw = float(t), raw
        return best_t, best_raw

    def normalise(self, raw: float) -> float:
        null = -self.profile.fn_weight * self.scored_windows
        perfect = self.profile.tp_weight * self.n_windows
        if perfect == null:
            return 0.0
        return 100.0 * (raw - null) / (perfect - null)


def score_corpus(
    files: Sequence[ScoredFile], profile: CostProfile, threshold: float | None = None
) -> CorpusResult:
    """NAB score of a corpus: with `threshold=None` the corpus-optimal threshold (NAB's procedure),
    otherwise the score at that fixed threshold."""
    corpus = _Corpus(files, profile)
    if threshold is None:
        t, raw = corpus.optimise()
    else:
        t, raw = threshold, corpus.raw_at(threshold)
    return CorpusResult(
        profile=profile.name, threshold=t, raw=raw, score=corpus.normalise(raw), windows=corpus.n_windows
    )


def windows_for_anomalies(n_rows: int, anomaly_rows: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Build NAB windows for new labelled data (SCORING.md §2 steps 2-4)."""
    if not anomaly_rows:
        return ()
    length = int(0.10 * n_rows / len(anomaly_rows))
    half = length // 2
    raw = sorted((max(a - half, 0), min(a + half, n_rows - 1)) for a in anomaly_rows)
    p = probation_rows(n_rows)
    if raw and raw[0][0] < p:
        raw = raw[1:]
    merged: list[tuple[int, int]] = []
    for s, e in raw:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return tuple(merged)
