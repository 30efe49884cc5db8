"""Causal, stateful DSP: montage, filters, resampling, epochs with context, quality.

The daemon only needs :class:`SignalChain` and the frozen configs it takes.
"""

from sleepstream.dsp.chain import ChainStats, SignalChain
from sleepstream.dsp.epochs import EpochBuffer, EpochConfig
from sleepstream.dsp.filters import FilterBank, FilterConfig, StreamingSOS
from sleepstream.dsp.montage import Montage
from sleepstream.dsp.quality import QualityConfig, confidence_factor
from sleepstream.dsp.resample import StreamingResampler
from sleepstream.dsp.timeline import Timeline

__all__ = [
    "ChainStats",
    "EpochBuffer",
    "EpochConfig",
    "FilterBank",
    "FilterConfig",
    "Montage",
    "QualityConfig",
    "SignalChain",
    "StreamingResampler",
    "StreamingSOS",
    "Timeline",
    "confidence_factor",
]
