"""Readers shared by the daemon and :mod:`distill`: recordings, hypnograms, epochs."""

from sleepstream.io.night import Hypnogram, Night

__all__ = ["Hypnogram", "Night"]
