"""What a format's int8 layer debugger gives `quantize-doctor`: per-layer losses, ranked, and the
same int8 model re-quantized with chosen layers left in float.

A format declares its debugger in its TargetSpec (`layer_debugger`, and `layer_debug_from`: the
float format the doctor exports to first). The doctor itself measures every choice on the
target's own runner, so a debugger only ranks and re-quantizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..artifact import Artifact

Feeds = dict[str, "np.ndarray"]


@dataclass
class LayerLoss:
    node: str
    op_type: str
    tensor: str
    snr_db: float                # the layer's output in the int8 model against the float model
    input_snr_db: float | None   # the worst of its inputs'; None where the debugger feeds each layer exact inputs
    lost_db: float | None        # what this layer adds: input_snr_db - snr_db (None: snr_db alone says it)

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(self).items()}


class LayerDebugger(Protocol):
    float_model: Path   # the float model in the target's format: the reference every choice is measured against

    def rank(self) -> list[LayerLoss]:
        """Every measured layer, the one that loses most first."""

    def quantized(self, keep_float: Sequence[str], out: Path) -> list[str]:
        """Write the int8 model with the named layers (and whatever must stay float with them) in
        float to `out`; return every layer left in float."""


class LayerDebuggerOpener(Protocol):
    def __call__(self, float_artifact: Artifact, calibrate: list[Feeds], evaluate: list[Feeds], scratch: Path,
                 signature: str | None) -> LayerDebugger: ...


class ChannelNoise:
    """Signal and quantization noise of one tensor, summed over samples per channel."""

    def __init__(self, channel_axis: int) -> None:
        self.channel_axis = channel_axis
        self.signal: Any = None
        self.noise: Any = None
        self.mismatched = False

    def add(self, reference: Any, candidate: Any) -> None:
        import numpy as np

        ref, got = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
        if ref.shape != got.shape:
            self.mismatched = True
            return
        if ref.ndim >= 2 and ref.shape[self.channel_axis] > 1:
            ref, got = np.moveaxis(ref, self.channel_axis, -1), np.moveaxis(got, self.channel_axis, -1)
            ref, got = ref.reshape(-1, ref.shape[-1]), got.reshape(-1, got.shape[-1])
        else:
            ref, got = ref.reshape(-1, 1), got.reshape(-1, 1)
        signal, noise = np.sum(ref * ref, axis=0), np.sum((ref - got) ** 2, axis=0)
        if self.signal is not None and self.signal.shape != signal.shape:
            self.mismatched = True
            return
        self.signal = signal if self.signal is None else self.signal + signal
        self.noise = noise if self.noise is None else self.noise + noise

    def worst_snr_db(self) -> float:
        """10 log10(signal / noise) of the worst channel; inf when exact.

        The worst channel's, because one outlier channel makes a per-tensor int8 scale crush every
        other channel, which an SNR over the whole tensor (dominated by the outlier) would hide. A
        channel with no signal (a ReLU keeps it at 0) has none to lose and is left out."""
        import numpy as np

        if self.mismatched:
            return -math.inf
        if self.signal is None:
            return math.inf
        signal, noise = self.signal, self.noise
        if signal.size and signal.max() > 0:
            live = signal > 1e-9 * float(signal.max())
            signal, noise = signal[live], noise[live]
        with np.errstate(divide="ignore"):
            ratios = np.where(noise == 0, np.inf,
                              10 * np.log10(np.maximum(signal, 1e-300) / np.maximum(noise, 1e-300)))
        return float(ratios.min()) if ratios.size else math.inf


def worst_channel_snr(reference: list[Any], candidate: list[Any], channel_axis: int = 1) -> float:
    """The worst channel's SNR (dB) of `candidate` against `reference`, over all samples."""
    noise = ChannelNoise(channel_axis)
    for ref, got in zip(reference, candidate):
        noise.add(ref, got)
    return noise.worst_snr_db()
