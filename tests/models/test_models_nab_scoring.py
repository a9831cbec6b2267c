"""The NAB scorer against the worked example in /work/shared/data/nab/SCORING.md §8."""

from __future__ import annotations

import numpy as np
import pytest

from models.nab_scoring import (
    LOW_FN,
    LOW_FP,
    STANDARD,
    ScoredFile,
    _file_rows,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    windows_for_anomalies,
)


def _example() -> ScoredFile:
    scores = np.zeros(100)
    for row, value in {5: 0.90, 30: 0.80, 62: 0.95, 65: 0.99, 72: 0.70, 80: 0.85, 99: 0.75}.items():
        scores[row] = value
    return ScoredFile(name="example.csv", scores=scores, windows=((60, 69),))


def test_scaled_sigmoid_anchor_values() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.986614, abs=1e-6)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.848284, abs=1e-6)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0


def test_probation() -> None:
    assert probation_rows(100) == 15
    assert probation_rows(22695) == 750


def test_sweep_values_of_worked_example() -> None:
    rows = _file_rows(_example(), STANDARD, 0)
    p = 15
    sweep = {i + p: v for i, v in enumerate(rows.sweep.tolist())}
    assert sweep[62] == pytest.approx(0.977107, abs=1e-6)
    assert sweep[65] == pytest.approx(0.859793, abs=1e-6)
    assert sweep[60] == pytest.approx(1.0, abs=1e-9)
    assert sweep[69] == pytest.approx(0.248242, abs=1e-6)
    assert sweep[30] == pytest.approx(-0.11)
    assert sweep[72] == pytest.approx(-0.682262 * 0.11, abs=1e-6)
    assert sweep[80] == pytest.approx(-0.995574 * 0.11, abs=1e-6)
    assert sweep[99] == pytest.approx(-0.11)


@pytest.mark.parametrize(
    ("threshold", "standard", "low_fp", "low_fn"),
    [
        (0.90, 0.977107, 0.977107, 0.977107),
        (0.80, 0.757594, 0.538081, 0.757594),
        (0.75, 0.647594, 0.318081, 0.647594),
        (0.70, 0.572545, 0.167983, 0.572545),
    ],
)
def test_raw_scores_at_fixed_thresholds(
    threshold: float, standard: float, low_fp: float, low_fn: float
) -> None:
    f = [_example()]
    assert score_corpus(f, STANDARD, threshold).raw == pytest.approx(standard, abs=1e-6)
    assert score_corpus(f, LOW_FP, threshold).raw == pytest.approx(low_fp, abs=1e-6)
    assert score_corpus(f, LOW_FN, threshold).raw == pytest.approx(low_fn, abs=1e-6)


def test_optimised_threshold_and_normalisation() -> None:
    for profile in (STANDARD, LOW_FP, LOW_FN):
        result = score_corpus([_example()], profile)
        assert result.threshold == pytest.approx(0.95)
        assert result.raw == pytest.approx(0.977107, abs=1e-6)
    assert score_corpus([_example()], STANDARD).score == pytest.approx(98.86, abs=0.01)


def test_null_and_perfect_detectors() -> None:
    null = ScoredFile(name="n", scores=np.full(100, 0.5), windows=((60, 69),))
    assert score_corpus([null], STANDARD).score == pytest.approx(0.0)
    perfect_scores = np.zeros(100)
    perfect_scores[60] = 1.0
    perfect = ScoredFile(name="p", scores=perfect_scores, windows=((60, 69),))
    assert score_corpus([perfect], STANDARD).score == pytest.approx(100.0)
    assert score_corpus([perfect], LOW_FN).score == pytest.approx(100.0)


def test_scores_outside_unit_interval_are_rejected() -> None:
    bad = ScoredFile(name="b", scores=np.full(10, 1.5), windows=())
    with pytest.raises(ValueError):
        score_corpus([bad], STANDARD)


def test_windows_for_new_labels() -> None:
    # N=1000, two anomalies -> L = 50 rows, half 25; the first lies in probation (P=150) and is dropped
    assert windows_for_anomalies(1000, [100, 500]) == ((475, 525),)
    assert windows_for_anomalies(1000, [500, 520]) == ((475, 545),)
