"""Channel selection: one channel or a derivation ``A - B`` (or ``A - mean(B, C)``), in µV."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sleepstream.errors import ChannelNotFoundError, ConfigError
from sleepstream.types import Chunk


@dataclass(frozen=True)
class Montage:
    """Which row(s) of a :class:`~sleepstream.types.Chunk` to stage, and the scale to µV.

    Parameters
    ----------
    channel : str
        Name of the active channel (e.g. ``"EEG Fpz-Cz"``, ``"AF7"``).
    reference : str, tuple of str, or None
        Reference channel(s); the derivation is ``channel - reference``, or
        ``channel - mean(references)`` for several (e.g. linked mastoids).
    scale_to_uv : float
        Factor from source units to µV (1.0 when the source already gives µV,
        1e6 for volts).
    """

    channel: str
    reference: str | tuple[str, ...] | None = None
    scale_to_uv: float = 1.0

    def __post_init__(self) -> None:
        if not self.channel:
            raise ConfigError("montage: channel name is empty")
        if not np.isfinite(self.scale_to_uv) or self.scale_to_uv == 0:
            raise ConfigError(f"montage: scale_to_uv={self.scale_to_uv!r} must be finite, non-zero")

    @property
    def references(self) -> tuple[str, ...]:
        """The reference channel names (empty for a single channel)."""
        if self.reference is None:
            return ()
        return (self.reference,) if isinstance(self.reference, str) else tuple(self.reference)

    @property
    def name(self) -> str:
        """Human-readable derivation name, e.g. ``"AF7-TP9"`` or ``"C3-mean(A1,A2)"``."""
        refs = self.references
        if not refs:
            return self.channel
        return (
            f"{self.channel}-{refs[0]}"
            if len(refs) == 1
            else f"{self.channel}-mean({','.join(refs)})"
        )

    def rows(self, channels: tuple[str, ...] | list[str]) -> tuple[int, tuple[int, ...]]:
        """Row indices of the active and the reference channels in ``channels``.

        Raises
        ------
        ChannelNotFoundError
            Naming the missing channel and listing the available ones.
        """
        names = list(channels)

        def find(name: str) -> int:
            if name in names:
                return names.index(name)
            # Tolerate case and surrounding-space differences, but only when unambiguous.
            folded = [n.strip().casefold() for n in names]
            hits = [i for i, n in enumerate(folded) if n == name.strip().casefold()]
            if len(hits) == 1:
                return hits[0]
            raise ChannelNotFoundError(
                f"channel {name!r} not found; available: {', '.join(names) or '(none)'}"
            )

        return find(self.channel), tuple(find(r) for r in self.references)

    def apply(self, samples: np.ndarray, channels: tuple[str, ...] | list[str]) -> np.ndarray:
        """The derivation in µV.

        Parameters
        ----------
        samples : ndarray, shape (n_channels, n_samples)
            Source units.
        channels : sequence of str
            One name per row.

        Returns
        -------
        ndarray, shape (n_samples,), float64, µV
        """
        samples = np.asarray(samples)
        if samples.ndim != 2 or samples.shape[0] != len(channels):
            raise ConfigError(
                f"montage: samples shape {samples.shape} does not match {len(channels)} channels"
            )
        a, refs = self.rows(channels)
        x = samples[a].astype(np.float64, copy=True)
        if len(refs) == 1:
            x -= samples[refs[0]]
        elif refs:
            x -= np.mean(samples[list(refs)], axis=0)
        if self.scale_to_uv != 1.0:
            x *= self.scale_to_uv
        out: np.ndarray = x
        return out

    def select(self, chunk: Chunk) -> np.ndarray:
        """:meth:`apply` on a chunk; shape (n_samples,), float64, µV."""
        return self.apply(chunk.samples, chunk.channels)
