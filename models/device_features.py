"""Inputs of the device (multichannel) forecaster, shared by training and the gateway's scorer.

A device reports ``C`` channels in one message. Each channel is normalised with the device's own
warm-up (median and a robust spread), and the network sees, for every channel at once (a fixed
block of ``MAX_CHANNELS`` rows, padded with zeros, one LiteRT call per message):

* the channel's last ``window`` normalised values relative to its latest one (``window - 1``
  differences) and its latest value (clipped);
* the device's context: the mean over the *other* channels of their last ``window - 1``
  reading-to-reading changes (so a speed step that moves every channel predicts each one's next
  change).

It predicts each channel's next change. Channel-count agnostic (one shared network per row), so
the same model scores a 3-channel conveyor, a 5-channel pump or any CSV rig.
"""

from __future__ import annotations

import numpy as np

#: Channels per network call (more channels: several calls of this many).
MAX_CHANNELS = 8
#: Readings of history per channel.
WINDOW = 8
#: Inputs per channel row: own differences, own latest value, context differences.
N_FEATURES = (WINDOW - 1) + 1 + (WINDOW - 1)
#: Normalised values and their differences are clipped here.
CLIP = 8.0


def robust_location_scale(x: np.ndarray, floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and spread of warm-up rows ``x`` (rows x channels).

    Spread: the larger of 1.4826 x MAD and 0.5 x the standard deviation (a quantised or mostly
    constant channel keeps a usable scale), floored at ``floor`` times the channel's magnitude."""
    loc = np.median(x, axis=0)
    mad = 1.4826 * np.median(np.abs(x - loc), axis=0)
    spread = np.maximum(mad, 0.5 * np.std(x, axis=0))
    magnitude = np.maximum(np.abs(loc), 1.0)
    return loc, np.maximum(spread, floor * magnitude)


def channel_inputs(zwin: np.ndarray) -> np.ndarray:
    """Network inputs for one device message: ``zwin`` is (WINDOW, C) normalised values, oldest
    first; returns (blocks, MAX_CHANNELS, N_FEATURES) float32, rows beyond C zero."""
    w, c = zwin.shape
    if w != WINDOW:
        raise ValueError(f"need {WINDOW} readings of history, got {w}")
    z = np.clip(zwin, -CLIP, CLIP)
    latest = z[-1]
    own = np.clip(z[:-1] - latest, -CLIP, CLIP).T  # (C, W-1)
    steps = np.diff(z, axis=0)  # (W-1, C)
    total = steps.sum(axis=1, keepdims=True)
    others = (total - steps) / max(1, c - 1) if c > 1 else np.zeros_like(steps)
    ctx = np.clip(others, -CLIP, CLIP).T  # (C, W-1)
    rows = np.concatenate([own, latest[:, None], ctx], axis=1).astype(np.float32)
    blocks = -(-c // MAX_CHANNELS)
    out = np.zeros((blocks * MAX_CHANNELS, N_FEATURES), np.float32)
    out[:c] = rows
    return out.reshape(blocks, MAX_CHANNELS, N_FEATURES)


def training_pairs(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, mask) of one normalised device run ``z`` (T x C) for training: X is (n, MAX_CHANNELS,
    N_FEATURES), y the next change of each channel (n, MAX_CHANNELS), mask 1 on real channels."""
    t, c = z.shape
    if c > MAX_CHANNELS:
        raise ValueError(f"training runs have at most {MAX_CHANNELS} channels")
    zc = np.clip(z, -CLIP, CLIP)
    n = t - WINDOW
    if n <= 0:
        empty = np.zeros((0, MAX_CHANNELS), np.float32)
        return np.zeros((0, MAX_CHANNELS, N_FEATURES), np.float32), empty, empty
    idx = np.arange(WINDOW)[None, :] + np.arange(n)[:, None]
    win = zc[idx]  # (n, W, C)
    latest = win[:, -1, :]
    own = np.clip(win[:, :-1, :] - latest[:, None, :], -CLIP, CLIP).transpose(0, 2, 1)
    steps = np.diff(win, axis=1)
    total = steps.sum(axis=2, keepdims=True)
    others = (total - steps) / max(1, c - 1) if c > 1 else np.zeros_like(steps)
    ctx = np.clip(others, -CLIP, CLIP).transpose(0, 2, 1)
    rows = np.concatenate([own, latest[:, :, None], ctx], axis=2).astype(np.float32)
    x = np.zeros((n, MAX_CHANNELS, N_FEATURES), np.float32)
    x[:, :c] = rows
    y = np.zeros((n, MAX_CHANNELS), np.float32)
    y[:, :c] = np.clip(zc[WINDOW:] - latest, -CLIP, CLIP)
    mask = np.zeros((n, MAX_CHANNELS), np.float32)
    mask[:, :c] = 1.0
    return x, y, mask
