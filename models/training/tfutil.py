"""TensorFlow helpers for training: lazy import, seeding, device choice. Imported only by training code."""

from __future__ import annotations

import os
import random
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
