"""Typed domain errors. Each carries the exit code the CLI returns for it.

Library code raises these; only :mod:`sleepstream.cli` turns them into a one-line
message and an exit code (never a traceback).
"""

from __future__ import annotations


class SleepstreamError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(SleepstreamError):
    """Invalid command-line value or combination."""

    exit_code = 2


class DataFileError(SleepstreamError):
    """A recording or hypnogram cannot be read (missing, empty, not EDF, truncated)."""

    exit_code = 3


class ChannelNotFoundError(DataFileError):
    """The requested channel is not in the file; the message lists the available ones."""

    exit_code = 4


class EmptyFileError(DataFileError):
    """The file exists but holds no bytes (or no samples / labels)."""

    exit_code = 11


class NotEdfError(DataFileError):
    """The file is not EDF/BDF (no valid fixed header)."""

    exit_code = 12


class TruncatedFileError(DataFileError):
    """The file ends before the data its header declares."""

    exit_code = 13


class HypnogramError(DataFileError):
    """A hypnogram does not fit its recording or holds an unknown stage label."""

    exit_code = 5


class UnknownStageLabelError(HypnogramError):
    """A hypnogram holds a label that maps to no stage (names the label and line)."""

    exit_code = 14


class ConfigError(SleepstreamError):
    """A profile or config file is malformed; the message names file, key and value."""

    exit_code = 6


class ModelError(SleepstreamError):
    """A model file is unreadable or does not match its card (sha256, input contract)."""

    exit_code = 7


class SourceError(SleepstreamError):
    """A signal source cannot be opened (no board, unknown board, stream not found)."""

    exit_code = 8


class BrokerError(SleepstreamError):
    """The MQTT broker cannot be used at start-up (bad URL, TLS files, auth)."""

    exit_code = 9


class StorageError(SleepstreamError):
    """The state directory cannot be written (permissions, disk full)."""

    exit_code = 10


class AlreadyRunningError(SleepstreamError):
    """Another daemon already runs this device on this state dir (its lock is held)."""

    exit_code = 15
