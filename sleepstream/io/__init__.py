"""Readers shared by the daemon and :mod:`distill`: recordings, hypnograms, epochs.

The public API (everything a training script or a command needs):

- :func:`open_recording` -> :class:`Recording`: any supported file opened for lazy,
  chunked reading (``blocks(picks, start_s=, block_s=)`` of µV samples with their
  times); :func:`pick_channel` / :func:`pick_channels` choose channels by name;
  :func:`sniff_format` says which reader a file gets.
- :func:`read_recording` -> :class:`Night`: one channel of any recording, whole, with
  its hypnogram (given in any format :func:`read_hypnogram` reads, or the file's own
  stage annotations), optionally resampled; gaps are unscored.
- :func:`read_hypnogram`: EDF+ annotations, ``.hyp`` text, ISRUC, DREAMS, BIDS
  ``events.tsv``, or the stage annotations of any recording MNE reads.
- Datasets: :func:`load_sc4001`, :func:`load_dreams`, :func:`find_sleep_edf_pairs`,
  :func:`find_isruc_pairs`, :func:`find_bids_pairs`, :func:`iter_nights`.

Heavy dependencies (mne, scipy.signal, BrainFlow) are imported only when a file needs them.
"""

from sleepstream.io.bids import find_bids_pairs, read_events_tsv
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
from sleepstream.io.readers import (
    read_edf,
    read_hypnogram,
    read_isruc,
    read_recording,
    read_sleep_edf,
)
from sleepstream.io.recording import (
    Annotation,
    Block,
    ChannelInfo,
    Recording,
    open_recording,
    pick_channel,
    pick_channels,
    read_channels,
    sniff_format,
)
from sleepstream.io.text import read_hyp_text, read_isruc_labels

__all__ = [
    "Annotation",
    "Block",
    "ChannelInfo",
    "Hypnogram",
    "Night",
    "Recording",
    "RecordingPair",
    "default_cache_dir",
    "find_bids_pairs",
    "find_isruc_pairs",
    "find_sleep_edf_pairs",
    "iter_nights",
    "load_dreams",
    "load_pairs",
    "load_sc4001",
    "load_sleep_edf20_hypnograms",
    "majority_30s",
    "open_recording",
    "pick_channel",
    "pick_channels",
    "read_channels",
    "read_dreams_excerpt",
    "read_dreams_hypnogram_5s",
    "read_edf",
    "read_edf_hypnogram",
    "read_events_tsv",
    "read_hyp_text",
    "read_hypnogram",
    "read_isruc",
    "read_isruc_labels",
    "read_recording",
    "read_sleep_edf",
    "resample_night",
    "resample_signal",
    "sniff_format",
    "trim_hypnogram",
    "trim_wake",
]
