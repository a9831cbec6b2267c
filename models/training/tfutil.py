"""TensorFlow helpers for training: lazy import, seeding, device choice. Imported only by training code."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np


def import_tf(seed: int) -> tuple[ModuleType, str]:
    """Import TensorFlow quietly, seed every RNG, and say which device trains."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    return tf, ("GPU:" + gpus[0].name if gpus else "CPU")


@contextmanager
def precision_policy(tf: ModuleType, policy: str) -> Iterator[None]:
    """Build (and train) Keras layers under ``policy`` (e.g. ``mixed_float16``); restore the previous one.

    Variables stay float32 under ``mixed_float16``, so weights copied to a float32 model convert to
    int8 exactly as a float32-trained model's would."""
    mp = tf.keras.mixed_precision
    previous = mp.global_policy()
    mp.set_global_policy(policy)
    try:
        yield
    finally:
        mp.set_global_policy(previous)
