"""CPU to validate a sync batch and split it into rows: the fast path (``cloud.services.sync_fast``) against
the model path (``protocols.SyncBatch`` + ``cloud.services.sync_plan.plan_batch``), on the same batches.

The batches are ``bench/cloud_sync.py``'s (gzip JSON, 1,000 realistic records each), decompressed before
timing. The two paths alternate batch by batch (in a random order per pair), so the machine's load weighs on
both alike; the figure is each path's median process CPU per batch. The garbage collector runs with the API
process's young-generation threshold (``cloud.gc_tuning``, setting ``gc_gen0_threshold``). No database.

    .venv/bin/python bench/sync_validation.py [--batches 40] [--rounds 3]

Last line: ``sync_validation: fast_ms=<x> model_ms=<x> speedup=<x>``.
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloud_sync import gateway_batches  # the same batches as the ingest benchmark
from cloud_testkit import GATEWAY_ID  # on the path through cloud_sync

from cloud.gc_tuning import apply_gen0_threshold
from cloud.services import sync_fast
from cloud.services.sync_plan import plan_batch
from cloud.settings import CloudSettings
from protocols import SyncBatch

NOW_MS = 1_790_000_000_000


def _model(raw: bytes) -> object:
    return plan_batch(SyncBatch.model_validate_json(raw), NOW_MS)


def _fast(raw: bytes) -> object:
    planned = sync_fast.plan_json(raw, NOW_MS)
    if planned is None:
        raise RuntimeError("the fast path refused a valid batch")
    return planned


def _cpu_ms(path: Callable[[bytes], object], raw: bytes) -> float:
    start = time.process_time()
    path(raw)
    return 1000 * (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    apply_gen0_threshold(CloudSettings.model_fields["gc_gen0_threshold"].default)
    raws = [gzip.decompress(p) for p in gateway_batches(GATEWAY_ID, args.batches, 1000)]
    times: dict[str, list[float]] = {"fast": [], "model": []}
    paths = {"fast": _fast, "model": _model}
    for _ in range(args.rounds):
        for raw in raws:
            for name in random.sample(sorted(paths), 2):
                times[name].append(_cpu_ms(paths[name], raw))
    fast, model = statistics.median(times["fast"]), statistics.median(times["model"])
    print(f"{len(raws)} batches of 1,000 records x {args.rounds} rounds, paths interleaved")
    print(f"fast path: {fast:.1f} ms a batch; model path: {model:.1f} ms a batch")
    print(f"sync_validation: fast_ms={fast:.1f} model_ms={model:.1f} speedup={model / fast:.2f}")


if __name__ == "__main__":
    main()
