"""BrainFlow boards (OpenBCI Cyton/Daisy/Ganglion, Muse S/2, synthetic, playback).

The board is prepared in a worker thread; a reader thread polls ``get_board_data`` and
hands chunks to the event loop through a bounded :class:`~.base.ChunkQueue` (oldest
dropped and counted when the consumer lags). Samples are the board's EEG rows in µV
(BrainFlow's units), timestamps its per-board timestamp row (Unix seconds).

Start-up fails fast with a :class:`~sleepstream.errors.SourceError` (no board, no dongle,
unknown board); never a BrainFlow traceback. A board lost later (exception, or no data
for ``stall_timeout_s``) is released and re-prepared with jittered exponential back-off,
counted in ``reconnects``; the timestamps then jump over the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from sleepstream.errors import SourceError, UsageError
from sleepstream.sources.base import Backoff, ChunkQueue, QueueCounters
from sleepstream.sources.boards import BOARD_NAMES, BOARDS, SERIAL_BOARDS, transport
from sleepstream.types import Chunk

log = logging.getLogger(__name__)

#: Where serial dongles show up (Linux USB-serial / CDC-ACM, macOS FTDI).
SERIAL_PATTERNS: tuple[str, ...] = ("/dev/ttyUSB*", "/dev/ttyACM*", "/dev/cu.usbserial-*")


def find_serial_ports(patterns: Sequence[str] = SERIAL_PATTERNS) -> list[str]:
    """Serial ports that could be a dongle, from the device globs and ``/sys/class/tty``."""
    found = {p for pat in patterns for p in glob.glob(pat)}
    dev_dirs = {os.path.dirname(pat) for pat in patterns}
    if "/dev" in dev_dirs:  # a port the kernel knows but udev has not created yet
        for entry in glob.glob("/sys/class/tty/ttyUSB*") + glob.glob("/sys/class/tty/ttyACM*"):
            dev = "/dev/" + os.path.basename(entry)
            if os.path.exists(dev):
                found.add(dev)
    return sorted(found)


def resolve_serial_port(
    board: str, serial_port: str | None, patterns: Sequence[str] = SERIAL_PATTERNS
) -> str | None:
    """The serial port to open for ``board``: the given one (checked) or the only candidate.

    Raises
    ------
    SourceError
        The given port does not exist or is not accessible; or no / several candidates.
    """
    if board not in SERIAL_BOARDS:
        return serial_port
    what = "OpenBCI Ganglion dongle" if board == "ganglion" else "OpenBCI dongle"
    if serial_port:
        if not os.path.exists(serial_port):
            ports = find_serial_ports(patterns)
            raise SourceError(
                f"serial port {serial_port} does not exist (found: {', '.join(ports) or 'none'}); "
                f"plug in the {what} or pass the right --serial-port"
            )
        if not os.access(serial_port, os.R_OK | os.W_OK):
            raise SourceError(
                f"no permission to open {serial_port}: add the user to the 'dialout' group "
                "(or the systemd unit's SupplementaryGroups=dialout)"
            )
        return serial_port
    ports = find_serial_ports(patterns)
    if not ports:
        raise SourceError(
            f"no {what} found: looked at serial ports {', '.join(patterns)} and none exist; "
            "plug in the dongle or pass --serial-port PORT"
        )
    if len(ports) > 1:
        raise SourceError(
            f"several serial ports could be the {what}: {', '.join(ports)}; "
            "choose one with --serial-port PORT"
        )
    return ports[0]


def _brainflow() -> Any:
    """Import BrainFlow quietly (no pkg_resources warning, no board logger)."""
    # BrainFlow imports pkg_resources when it first loads its library, not at import time:
    # the filter has to stay in place.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    try:
        from brainflow import board_shim
    except ImportError as exc:
        raise SourceError(f"BrainFlow is not installed ({exc}); pip install brainflow") from None
    board_shim.BoardShim.disable_board_logger()
    return board_shim


#: BrainFlow error names -> a hint for the user, per transport (see boards.transport):
#: a Muse on Bluetooth must never be told about a serial port.
_HINTS: dict[str, dict[str, str]] = {
    "UNABLE_TO_OPEN_PORT_ERROR": {
        "serial": "cannot open the serial port (in use, or no permission?)",
        "ble": "cannot open a Bluetooth LE connection (is Bluetooth on, the adapter "
        "present, the headband charged and not paired to a phone? try --mac-address)",
        "none": "cannot open the board",
    },
    "BOARD_NOT_READY_ERROR": {
        "serial": "the board does not answer (switched off, or out of range?)",
        "ble": "the headband was not found (switched off, out of range, or connected "
        "to another device?)",
        "none": "the board does not answer",
    },
    "BOARD_NOT_CREATED_ERROR": {"*": "the board could not be created"},
    "ANOTHER_BOARD_IS_CREATED_ERROR": {"*": "another session already holds this board"},
    "GENERAL_ERROR": {"*": "the board could not be reached"},
    "INVALID_ARGUMENTS_ERROR": {"*": "invalid connection options"},
    "SYNC_TIMEOUT_ERROR": {"*": "the board did not answer in time"},
}


def _explain(exc: BaseException, board: str) -> str:
    """One line: a hint that fits the board's transport, then BrainFlow's own text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = text.split(":", 1)[0]
    hints = _HINTS.get(code, {})
    hint = hints.get(transport(board)) or hints.get("*")
    return f"{hint} ({text})" if hint else text


class BrainFlowSource(QueueCounters):
    """A BrainFlow board as an async source of :class:`Chunk`.

    Parameters
    ----------
    board : str
        One of :data:`~.boards.BOARD_NAMES` (``openbci``, ``synthetic``, ``muse-s``, ...).
    serial_port, mac_address, ip_address, ip_port, serial_number, timeout
        BrainFlow connection options; the serial port of a dongle is found
        automatically when exactly one candidate exists.
    file : Path, optional
        The CSV a ``playback`` board replays.
    master_board : str
        The board whose layout a ``playback`` file has (default ``cyton``).
    poll_s : float
        Reader poll period in seconds (chunk length ~ poll_s x fs).
    queue_size : int
        Chunks buffered before the oldest is dropped.
    stall_timeout_s : float
        No data for this long (s) means the board is lost.
    backoff : Backoff
        Re-prepare schedule after a loss (default 0.5 s doubling to 10 s, jittered,
        forever).
    serial_patterns : sequence of str
        Device globs searched for a dongle.
    """

    #: A live stream: the profile's fs is enforced; the wall clock dates it.
    from_file: bool = False
    start_datetime: datetime | None = None

    def __init__(
        self,
        board: str = "synthetic",
        *,
        serial_port: str | None = None,
        mac_address: str | None = None,
        ip_address: str | None = None,
        ip_port: int | None = None,
        serial_number: str | None = None,
        timeout: int | None = None,
        file: Path | str | None = None,
        master_board: str | None = None,
        poll_s: float = 0.1,
        queue_size: int = 256,
        stall_timeout_s: float = 5.0,
        backoff: Backoff | None = None,
        serial_patterns: Sequence[str] = SERIAL_PATTERNS,
    ) -> None:
        key = str(board).strip().lower()
        if key not in BOARDS:
            raise SourceError(f"unknown board {board!r}; valid boards: {', '.join(BOARD_NAMES)}")
        if key == "playback":
            if file is None:
                raise UsageError("board 'playback' needs --file (a BrainFlow CSV recording)")
            master_board = master_board or "cyton"
            if master_board not in BOARDS or master_board in ("playback", "openbci"):
                raise UsageError(f"playback master board {master_board!r} is not a board name")
        if poll_s <= 0 or stall_timeout_s <= poll_s:
            raise UsageError("need poll_s > 0 and stall_timeout_s > poll_s")
        self.board = key
        self.serial_port = serial_port
        self.mac_address = mac_address
        self.ip_address = ip_address
        self.ip_port = ip_port
        self.serial_number = serial_number
        self.timeout = timeout
        self.file = Path(file) if file is not None else None
        self.master_board = master_board
        self.poll_s = float(poll_s)
        self.queue_size = int(queue_size)
        self.stall_timeout_s = float(stall_timeout_s)
        self.backoff = backoff or Backoff(initial_s=0.5, max_s=10.0)
        self.serial_patterns = tuple(serial_patterns)
        self.name = f"board:{key}"
        self.fs = 0.0
        self.channels: tuple[str, ...] = ()
        self.reconnects = 0
        self.last_error = ""
        self._queue: ChunkQueue | None = None
        self._shim: Any = None
        self._board: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ board handling
    def _layout(self) -> tuple[int, list[int], int, tuple[str, ...], float]:
        bs = self._shim
        ids = bs.BoardIds
        board_id = ids[BOARDS[self.board][0]].value
        layout_id = (
            ids[BOARDS[self.master_board or "cyton"][0]].value
            if self.board == "playback"
            else board_id
        )
        rows = list(bs.BoardShim.get_eeg_channels(layout_id))
        ts_row = int(bs.BoardShim.get_timestamp_channel(layout_id))
        try:
            names = tuple(bs.BoardShim.get_eeg_names(layout_id))
        except Exception:  # BrainFlow has no names for e.g. the Ganglion
            names = ()
        if len(names) != len(rows):
            names = tuple(f"EEG{i + 1}" for i in range(len(rows)))
        fs = float(bs.BoardShim.get_sampling_rate(layout_id))
        return board_id, rows, ts_row, names, fs

    def _params(self) -> Any:
        p = self._shim.BrainFlowInputParams()
        if self.serial_port:
            p.serial_port = self.serial_port
        if self.mac_address:
            p.mac_address = self.mac_address
        if self.ip_address:
            p.ip_address = self.ip_address
        if self.ip_port:
            p.ip_port = int(self.ip_port)
        if self.serial_number:
            p.serial_number = self.serial_number
        if self.timeout:
            p.timeout = int(self.timeout)
        if self.file is not None:
            p.file = str(self.file)
            p.master_board = self._shim.BoardIds[BOARDS[self.master_board or "cyton"][0]].value
        return p

    def _prepare(self) -> None:
        """Prepare and start the board (blocking; raises BrainFlow errors).

        The same ``BoardShim`` is reused for every re-prepare: BrainFlow keys sessions by
        board id and parameters, so a dropped second object's ``__del__`` would release
        the live session.
        """
        if self._board is None:
            self._board = self._shim.BoardShim(self._board_id, self._params())
        try:
            self._board.prepare_session()
            self._board.start_stream(450_000)
        except BaseException:
            self._release(self._board)
            raise

    @staticmethod
    def _release(board: Any) -> None:
        if board is None:
            return
        for step in ("stop_stream", "release_session"):
            with contextlib.suppress(Exception):  # not streaming / released / device gone
                getattr(board, step)()

    def _open(self) -> None:
        self._shim = _brainflow()
        self._board_id, self._rows, self._ts_row, self.channels, self.fs = self._layout()
        if self.file is not None and not self.file.is_file():
            raise SourceError(f"playback file {self.file} not found")
        try:
            self._prepare()
        except self._shim.BrainFlowError as exc:
            where = f" on {self.serial_port}" if self.serial_port else ""
            raise SourceError(
                f"cannot open board {self.board!r}{where}: {_explain(exc, self.board)}"
            ) from None

    # ------------------------------------------------------------------ reader thread
    def _chunk(self, data: np.ndarray) -> Chunk:
        return Chunk(
            samples=np.ascontiguousarray(data[self._rows], dtype=np.float64),
            timestamps=np.ascontiguousarray(data[self._ts_row], dtype=np.float64),
            fs=self.fs,
            channels=self.channels,
            received_at=time.perf_counter(),
        )

    def _read_loop(self) -> None:
        assert self._queue is not None
        try:
            self._read_forever()
        except Exception as exc:  # a bug or an odd device must not hang the consumer
            log.exception("reader thread failed")
            self._queue.close_threadsafe(SourceError(f"board {self.board!r} reader failed: {exc}"))

    def _read_forever(self) -> None:
        assert self._queue is not None
        last_data = time.monotonic()
        while not self._stop.wait(self.poll_s):
            try:
                data = self._board.get_board_data()
            except Exception as exc:  # BrainFlowError: the board went away
                self._recover(f"read failed: {_explain(exc, self.board)}")
                last_data = time.monotonic()
                continue
            if data.shape[1]:
                last_data = time.monotonic()
                self._queue.put_threadsafe(self._chunk(data))
            elif time.monotonic() - last_data > self.stall_timeout_s:
                self._recover(f"no data for {self.stall_timeout_s:g} s")
                last_data = time.monotonic()

    def _recover(self, why: str) -> None:
        """Release the lost board and re-prepare it with back-off (reader thread)."""
        self.last_error = why
        log.warning("board %s lost (%s); re-preparing with back-off", self.board, why)
        self._release(self._board)
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            if self._stop.wait(delay):
                return
            try:
                self._prepare()
            except Exception as exc:
                self.last_error = (
                    f"re-prepare attempt {attempt} failed: {_explain(exc, self.board)}"
                )
                log.warning("board %s: %s", self.board, self.last_error)
                continue
            self.reconnects += 1
            log.warning("board %s is back after %d attempt(s)", self.board, attempt)
            return
        self._stop.set()
        assert self._queue is not None
        self._queue.close_threadsafe(SourceError(f"board {self.board!r} lost: {self.last_error}"))

    # ------------------------------------------------------------------ protocol
    async def __aenter__(self) -> BrainFlowSource:
        self.serial_port = resolve_serial_port(self.board, self.serial_port, self.serial_patterns)
        await asyncio.to_thread(self._open)
        self._queue = ChunkQueue(asyncio.get_running_loop(), self.queue_size)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._read_loop, name=f"brainflow-{self.board}", daemon=True
        )
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 15.0)
            self._thread = None
        board, self._board = self._board, None
        await asyncio.to_thread(self._release, board)
        del board  # drop the BoardShim now, not in a noisy __del__ at exit

    def __aiter__(self) -> BrainFlowSource:
        return self

    async def __anext__(self) -> Chunk:
        if self._queue is None:
            raise StopAsyncIteration
        return await self._queue.get()
