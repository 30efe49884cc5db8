"""Signal sources behind one async protocol; back-ends load lazily (see :mod:`.base`)."""

from sleepstream.sources.base import (
    SOURCES,
    Backoff,
    ChunkQueue,
    Source,
    open_source,
    parse_source_spec,
    source_class,
)

__all__ = [
    "SOURCES",
    "Backoff",
    "ChunkQueue",
    "Source",
    "open_source",
    "parse_source_spec",
    "source_class",
]
