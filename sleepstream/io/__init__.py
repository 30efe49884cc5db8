"""Readers shared by the daemon and :mod:`distill`: recordings, hypnograms, epochs.

Heavy dependencies (edfio, scipy.signal) are imported only when a file is read.
"""

from sleepstream.io.cache import default_cache_dir
from sleepstream.io.datasets import (
    RecordingPair,
    find_isruc_pairs,
    find_sleep_edf_pairs,
    iter_nights,
    load_dreams,
    load_pairs,
    load_sc4001,
    load_sleep_edf20_hypnograms,
)
from sleepstream.io.dreams import majority_30s, read_dreams_excerpt, read_dreams_hypnogram_5s
from sleepstream.io.edf import read_edf_hypnogram
from sleepstream.io.night import Hypnogram, Night
from sleepstream.io.processing import (
    resample_night,
    resample_signal,
    trim_hypnogram,
    trim_wake,
)
from sleepstream.io.readers import read_edf, read_hypnogram, read_isruc, read_sleep_edf
from sleepstream.io.text import read_hyp_text, read_isruc_labels

__all__ = [
    "Hypnogram",
    "Night",
    "RecordingPair",
    "default_cache_dir",
    "find_isruc_pairs",
    "find_sleep_edf_pairs",
    "iter_nights",
    "load_dreams",
    "load_pairs",
    "load_sc4001",
    "load_sleep_edf20_hypnograms",
    "majority_30s",
    "read_dreams_excerpt",
    "read_dreams_hypnogram_5s",
    "read_edf",
    "read_edf_hypnogram",
    "read_hyp_text",
    "read_hypnogram",
    "read_isruc",
    "read_isruc_labels",
    "read_sleep_edf",
    "resample_night",
    "resample_signal",
    "trim_hypnogram",
    "trim_wake",
]
