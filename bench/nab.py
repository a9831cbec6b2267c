"""Stream every series of a NAB-layout directory through the gateway's int8 anomaly scorer and
score it with the NAB-compatible scorer (models.nab_scoring).

    python bench/nab.py [--data DIR] [--model models/default/anomaly.tflite]

Last line: nab: standard=<s> low_fp=<s> low_fn=<s> fixed_threshold_standard=<s> files=<n>
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from models.anomaly import AnomalyScorer, AnomalyScorerConfig
from models.nab_data import read_corpus
from models.nab_scoring import LOW_FN, LOW_FP, STANDARD, ScoredFile, score_corpus
from models.runtime import default_model_path, load_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "nab"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=default_model_path("anomaly"))
    args = parser.parse_args()

    model = load_model(args.model)
    defaults = model.manifest.anomaly_defaults
    config = AnomalyScorerConfig(threshold=defaults.threshold) if defaults else AnomalyScorerConfig()
    scorer = AnomalyScorer(model, config)
    corpus = read_corpus(args.data.resolve())
    files = []
    rows = 0
    started = time.perf_counter()
    for series in corpus:
        scores = np.empty(series.values.shape[0])
        for i, (ts, value) in enumerate(zip(series.ts_ms.tolist(), series.values.tolist(), strict=True)):
            scores[i] = scorer.score(series.name, ts, value).score
        scorer.forget(series.name)
        rows += scores.shape[0]
        files.append(ScoredFile(series.name, scores, series.windows))
    elapsed = time.perf_counter() - started

    results = {p.name: score_corpus(files, p) for p in (STANDARD, LOW_FP, LOW_FN)}
    fixed = score_corpus(files, STANDARD, config.threshold)
    per_file = [score_corpus([f], STANDARD, config.threshold) for f in files]
    for f, r in zip(files, per_file, strict=True):
        alerts = int(np.sum(f.scores >= config.threshold))
        print(f"{f.name:60s} windows={len(f.windows)} alerts@fixed={alerts:4d} raw@fixed={r.raw:+.3f}")
    for name, r in results.items():
        print(f"{name:20s} score={r.score:7.2f} optimal_threshold={r.threshold:.4f} raw={r.raw:+.3f}")
    print(
        f"fixed threshold {config.threshold:.4f} (shipped in {args.model.name}'s manifest): standard={fixed.score:.2f}"
    )
    sweep = " ".join(f"{t:.2f}:{score_corpus(files, STANDARD, t).score:.1f}" for t in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5))
    print(f"standard at other fixed thresholds: {sweep}")
    print(
        f"streamed {rows} readings in {elapsed:.1f} s ({1e6 * elapsed / rows:.1f} us/reading incl. features)"
    )
    print(
        f"nab: standard={results['standard'].score:.2f} low_fp={results['reward_low_FP_rate'].score:.2f} "
        f"low_fn={results['reward_low_FN_rate'].score:.2f} fixed_threshold_standard={fixed.score:.2f} "
        f"files={len(files)}"
    )


if __name__ == "__main__":
    main()
