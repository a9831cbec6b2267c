"""The joint (multichannel) anomaly score of a device, on the gateway (LiteRT; never TensorFlow).

Per device, in arrival order of its messages (``{channel: value}``, all channels of one reading):

1. Warm-up (``warmup`` messages, score 0): the channels' median and robust spread normalise the
   device (:func:`models.device_features.robust_location_scale`). At its end the device is
   calibrated on those messages: the first ``fit_fraction`` give the mean and covariance of the
   normalised values (a PCA: components up to ``pca_variance`` of the variance are the normal
   subspace) and the covariance of the int8 network's one-step forecast residuals; the rest are
   held out to calibrate the statistics' tails. Channels with fewer than ``min_distinct``
   distinct warm-up values (0/1 states such as a door contact, constant channels) are left out
   (the per-stream scorer has a rule for them); a device left with fewer than ``min_channels``
   (3) channels is not scored jointly: with two, one relation is all there is to check, and on
   the simulator's tuning fleet (demo fleet, seed 1) two-channel cold rooms (temperature and
   compressor power, which cycle and defrost) raised 15 false device alerts in 10 days.
2. Three statistics per message, each averaged (as square roots: Mahalanobis distances) over
   the last ``smooth`` messages: ``spe`` (the part of the normalised vector outside the normal subspace, in units of
   those minor components' own variances: broken relations between channels), ``t2`` (Hotelling
   T² inside it: an operating point far from the usual) and ``resid`` (Hotelling T² of the
   forecast residuals: the channels' joint dynamics changed).
3. Each is turned into a tail probability against its held-out calibration values (empirical
   in the bulk, an exponential tail fitted above the ``tail_from`` quantile); score =
   -log10(3 x smallest probability) / ``log_scale``, clipped to [0, 1]; ``detector`` names the
   statistic, and each channel's share of it is its ``contribution`` (with the channel's expected
   value: the PCA reconstruction or the forecast).
4. After the warm-up the mean and both covariances keep learning (exponentially, over
   ``horizon`` messages, each message ``delay`` messages late), so operating points the warm-up
   never saw (a night shift, a new setpoint) become normal. Messages scored ``alarm_from`` or
   more are not learnt, unless the alarm has lasted ``relearn_after`` messages: a fault keeps
   alerting for that long, then a lasting change is the new normal.

Bounded state: ``max_devices`` devices, least recently used dropped.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.device_features import MAX_CHANNELS, N_FEATURES, WINDOW, channel_inputs, robust_location_scale
from models.runtime import LoadedModel, ModelLoadError

TESTS = ("spe", "t2", "resid")


class DeviceScorerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="alert when score >= threshold")
    warmup: int = Field(default=400, ge=40, description="messages per device that calibrate it (score 0)")
    fit_fraction: float = Field(default=0.6, gt=0.2, lt=0.95, description="warm-up share fitting the PCA")
    pca_variance: float = Field(default=0.95, gt=0.5, lt=1.0, description="variance the normal subspace keeps")
    ridge: float = Field(default=1e-3, gt=0.0, description="added to covariance diagonals (std units²)")
    smooth: int = Field(default=5, ge=1, description="messages each statistic is averaged over")
    tail_from: float = Field(default=0.9, gt=0.5, lt=1.0, description="quantile above which the tail is fitted")
    log_scale: float = Field(default=40.0, gt=0.0, description="score = -log10(3 p) / log_scale")
    max_devices: int = Field(default=10_000, ge=1)
    min_channels: int = Field(
        default=3, ge=2, description="devices with fewer usable channels are left to the per-stream scorer"
    )
    min_distinct: int = Field(
        default=3, ge=2, description="channels with fewer distinct warm-up values (0/1 states) are not used"
    )
    horizon: int = Field(
        default=1440, ge=0, description="messages the normal model averages over after the warm-up (0 = frozen)"
    )
    delay: int = Field(default=30, ge=0, description="a message is learnt this many messages late")
    alarm_from: float = Field(
        default=0.3, ge=0.0, le=1.0, description="messages scored this high are not learnt, unless ..."
    )
    relearn_after: int = Field(
        default=240, ge=1, description="... the alarm has lasted this many messages (a lasting new normal)"
    )
    refit_every: int = Field(default=10, ge=1, description="messages learnt between eigen-decompositions")
    transform: Literal["log1p", "sqrt", "raw"] = Field(
        default="sqrt", description="what each statistic is averaged and tail-fitted as"
    )


@dataclass(frozen=True, slots=True)
class ChannelShare:
    channel: str
    contribution: float
    expected: float
    observed: float


@dataclass(frozen=True, slots=True)
class DeviceResult:
    score: float
    alert: bool
    detector: str
    channels: tuple[ChannelShare, ...]
    #: Messages the statistics were averaged over (the alert's window).
    window: int


@dataclass(slots=True)
class _Tail:
    ref: np.ndarray  # sorted calibration values
    q: float
    beta: float
    p_q: float

    @classmethod
    def fit(cls, values: np.ndarray, tail_from: float) -> _Tail:
        ref = np.sort(values)
        q = float(np.quantile(ref, tail_from))
        excess = ref[ref > q] - q
        spread = float(np.std(ref)) if len(ref) > 1 else 1.0
        beta = max(float(excess.mean()) if len(excess) else 0.0, 0.05 * spread, 1e-3)
        return cls(ref, q, beta, 1.0 - tail_from)

    def p(self, s: float) -> float:
        if s <= self.q:
            n = len(self.ref)
            above = n - int(np.searchsorted(self.ref, s, side="left"))
            return max(above, 1) / n
        return max(1e-300, self.p_q * float(np.exp(-(s - self.q) / self.beta)))


@dataclass(slots=True)
class _Device:
    channels: tuple[str, ...]
    warm: list[np.ndarray] = field(default_factory=list)
    loc: np.ndarray | None = None
    scale: np.ndarray | None = None
    mean: np.ndarray | None = None
    basis: np.ndarray | None = None  # (C, k)
    #: Whitening of the subspace, of its complement and of the residuals (C, C), symmetric.
    w_major: np.ndarray | None = None
    w_minor: np.ndarray | None = None
    w_resid: np.ndarray | None = None
    tails: dict[str, _Tail] = field(default_factory=dict)
    zwin: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=WINDOW))
    pred: np.ndarray | None = None
    recent: dict[str, deque[float]] = field(default_factory=dict)
    last: np.ndarray | None = None
    #: The channels the joint score uses (indices into ``channels``), set at calibration.
    used: np.ndarray | None = None
    #: Fewer than two usable channels: the device is not scored jointly.
    skip: bool = False
    cov: np.ndarray | None = None
    rcov: np.ndarray | None = None
    pending: deque[tuple[np.ndarray, np.ndarray, bool]] = field(default_factory=deque)
    alarm_run: int = 0
    learnt: int = 0


class DeviceScorer:
    """Joint score per device: :meth:`score` with each message's channel values, oldest first."""

    def __init__(self, model: LoadedModel, config: DeviceScorerConfig | None = None) -> None:
        spec = model.manifest.inputs[0]
        if model.manifest.task != "device_anomaly" or spec.shape[-1] != MAX_CHANNELS * N_FEATURES:
            raise ModelLoadError(f"{model.path}: not a device_anomaly model of this input layout")
        if config is None:
            defaults = model.manifest.anomaly_defaults
            config = DeviceScorerConfig(threshold=defaults.threshold if defaults else 0.5)
        self.model = model
        self.config = config
        self._devices: OrderedDict[str, _Device] = OrderedDict()

    @classmethod
    def default(cls, config: DeviceScorerConfig | None = None) -> DeviceScorer:
        from models.runtime import default_model_path, load_model

        return cls(load_model(default_model_path("device_anomaly")), config)

    def forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)

    def is_warm(self, device_id: str) -> bool:
        dev = self._devices.get(device_id)
        return dev is not None and dev.basis is not None and not dev.skip

    # ----------------------------------------------------------------- network

    def _forecast(self, zwin: np.ndarray) -> np.ndarray:
        """Next normalised value of each channel from the last WINDOW rows (WINDOW, C)."""
        c = zwin.shape[1]
        blocks = channel_inputs(zwin)
        steps = np.concatenate([self.model.predict_one(b.reshape(-1)) for b in blocks])[:c]
        return zwin[-1] + steps

    # ----------------------------------------------------------------- state

    def _device(self, device_id: str, channels: tuple[str, ...]) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None or not set(channels) <= set(dev.channels):  # a new channel: a new device
            dev = _Device(channels)
            self._devices[device_id] = dev
            if len(self._devices) > self.config.max_devices:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(device_id)
        return dev

    def _calibrate(self, dev: _Device) -> None:
        cfg = self.config
        raw = np.stack(dev.warm)
        dev.warm = []
        # State (0/1) and constant channels are left to the per-stream scorer: no spread to learn.
        distinct = [len(np.unique(raw[:, i])) for i in range(raw.shape[1])]
        dev.used = np.array([i for i, n in enumerate(distinct) if n >= cfg.min_distinct], dtype=np.int64)
        if len(dev.used) < cfg.min_channels:
            dev.skip = True
            return
        raw = raw[:, dev.used]
        dev.loc, dev.scale = robust_location_scale(raw)
        z = (raw - dev.loc) / dev.scale
        n_fit = max(WINDOW + 10, int(cfg.fit_fraction * len(z)))
        fit = z[:n_fit]
        dev.mean = fit.mean(axis=0)
        dev.cov = np.cov((fit - dev.mean).T).reshape(z.shape[1], z.shape[1])
        preds = [self._forecast(z[i - WINDOW : i]) for i in range(WINDOW, len(z))]
        resid = z[WINDOW:] - np.stack(preds)
        dev.rcov = np.cov(resid[: n_fit - WINDOW].T).reshape(z.shape[1], z.shape[1])
        self._refit(dev)
        stats = {name: [] for name in TESTS}
        recent = {name: deque(maxlen=cfg.smooth) for name in TESTS}
        for i in range(n_fit, len(z)):
            raw_stats = self._stats(dev, z[i], resid[i - WINDOW])[0]
            for name in TESTS:
                recent[name].append(raw_stats[name])
                stats[name].append(float(np.mean(recent[name])))
        dev.tails = {name: _Tail.fit(np.asarray(stats[name]), cfg.tail_from) for name in TESTS}
        dev.recent = {name: deque(maxlen=cfg.smooth) for name in TESTS}
        dev.zwin.clear()
        dev.zwin.extend(z[-WINDOW:])
        dev.pred = self._forecast(np.stack(dev.zwin))

    def _refit(self, dev: _Device) -> None:
        assert dev.cov is not None
        cfg = self.config
        c = dev.cov.shape[0]
        lam, vec = np.linalg.eigh(dev.cov + cfg.ridge * np.eye(c))
        lam, vec = lam[::-1], vec[:, ::-1]
        k = int(np.searchsorted(np.cumsum(lam) / lam.sum(), cfg.pca_variance) + 1)
        k = min(k, max(1, c - 1))
        dev.basis = vec[:, :k]
        inv_sqrt = 1.0 / np.sqrt(lam)
        dev.w_major = (vec[:, :k] * inv_sqrt[:k]) @ vec[:, :k].T
        dev.w_minor = (vec[:, k:] * inv_sqrt[k:]) @ vec[:, k:].T
        assert dev.rcov is not None
        rlam, rvec = np.linalg.eigh(dev.rcov + cfg.ridge * np.eye(c))
        dev.w_resid = (rvec / np.sqrt(rlam)) @ rvec.T

    def _learn(self, dev: _Device, z: np.ndarray, r: np.ndarray, alarmed: bool) -> None:
        """Delayed, gated update of the normal subspace (see the module docstring)."""
        cfg = self.config
        if cfg.horizon == 0:
            return
        dev.alarm_run = dev.alarm_run + 1 if alarmed else 0
        dev.pending.append((z, r, alarmed))
        if len(dev.pending) <= cfg.delay:
            return
        old, old_r, old_alarmed = dev.pending.popleft()
        if old_alarmed and dev.alarm_run < cfg.relearn_after:
            return
        assert dev.mean is not None and dev.cov is not None
        a = 1.0 / cfg.horizon
        d = old - dev.mean
        dev.mean = dev.mean + a * d
        dev.cov = (1.0 - a) * (dev.cov + a * np.outer(d, d))
        if dev.rcov is not None:
            dev.rcov = (1.0 - a) * dev.rcov + a * np.outer(old_r, old_r)
        dev.learnt += 1
        if dev.learnt % cfg.refit_every == 0:
            self._refit(dev)

    def _stats(
        self, dev: _Device, z: np.ndarray, r: np.ndarray
    ) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray]:
        """Each statistic (as ``transform`` says), each channel's part of it (squared whitened
        coordinates: non-negative, summing to the statistic) and the PCA reconstruction."""
        assert dev.mean is not None and dev.basis is not None
        assert dev.w_major is not None and dev.w_minor is not None and dev.w_resid is not None
        d = z - dev.mean
        t = dev.basis.T @ d
        recon = dev.basis @ t
        spe_parts = np.square(dev.w_minor @ d)
        t2_parts = np.square(dev.w_major @ d)
        r_parts = np.square(dev.w_resid @ r)
        parts = {"spe": spe_parts, "t2": t2_parts, "resid": r_parts}
        values = {name: float(p.sum()) for name, p in parts.items()}
        if self.config.transform == "log1p":
            values = {name: float(np.log1p(v)) for name, v in values.items()}
        elif self.config.transform == "sqrt":
            values = {name: float(np.sqrt(v)) for name, v in values.items()}
        return values, parts, recon + dev.mean

    # ----------------------------------------------------------------- scoring

    def score(self, device_id: str, values: Mapping[str, float]) -> DeviceResult | None:
        """Score one message; None when the device is not scored jointly (fewer than two channels in
        the message, or fewer than ``min_channels`` usable ones after the warm-up)."""
        if len(values) < 2:
            return None
        dev = self._device(device_id, tuple(sorted(values)))
        x = np.array([values.get(ch, np.nan) for ch in dev.channels], dtype=np.float64)
        if dev.last is not None:  # a channel missing from this message keeps its last value
            x = np.where(np.isnan(x), dev.last, x)
        if np.isnan(x).any():
            return None
        dev.last = x
        if dev.skip:
            return None
        if dev.basis is None:
            dev.warm.append(x)
            if len(dev.warm) >= self.config.warmup:
                self._calibrate(dev)
            return DeviceResult(0.0, False, "device", (), 0)
        assert dev.loc is not None and dev.scale is not None and dev.pred is not None and dev.used is not None
        x = x[dev.used]
        z = (x - dev.loc) / dev.scale
        r = z - dev.pred
        raw_stats, parts, recon = self._stats(dev, z, r)
        best_p, best = 1.0, TESTS[0]
        for name in TESTS:
            dev.recent[name].append(raw_stats[name])
            p = dev.tails[name].p(float(np.mean(dev.recent[name])))
            if p < best_p:
                best_p, best = p, name
        score = float(min(1.0, max(0.0, -np.log10(min(1.0, len(TESTS) * best_p)) / self.config.log_scale)))
        expected_z = dev.pred if best == "resid" else recon
        expected = dev.loc + dev.scale * expected_z
        share = np.maximum(parts[best], 0.0)
        total = float(share.sum())
        share = share / total if total > 0 else np.full(len(share), 1.0 / len(share))
        names = [dev.channels[i] for i in dev.used]
        channels = tuple(
            ChannelShare(ch, float(share[i]), float(expected[i]), float(x[i])) for i, ch in enumerate(names)
        )
        self._learn(dev, z, r, score >= self.config.alarm_from)
        dev.zwin.append(z)
        dev.pred = self._forecast(np.stack(dev.zwin))
        return DeviceResult(score, score >= self.config.threshold, best, channels, len(dev.recent[best]))
