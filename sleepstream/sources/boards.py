"""BrainFlow board names users type, without importing BrainFlow.

Each name maps to the ``brainflow.board_shim.BoardIds`` member it opens and what it
needs to connect.
"""

from __future__ import annotations

#: name -> (BoardIds member, connection hint)
BOARDS: dict[str, tuple[str, str]] = {
    "openbci": (
        "CYTON_BOARD",
        "OpenBCI Cyton, 8 ch 250 Hz, USB dongle (serial port auto-detected)",
    ),
    "cyton": ("CYTON_BOARD", "OpenBCI Cyton, 8 ch 250 Hz, USB dongle (--serial-port)"),
    "cyton-daisy": ("CYTON_DAISY_BOARD", "OpenBCI Cyton+Daisy, 16 ch 125 Hz, USB dongle"),
    "ganglion": ("GANGLION_BOARD", "OpenBCI Ganglion, 4 ch 200 Hz, BLED112 dongle (--serial-port)"),
    "muse-s": ("MUSE_S_BOARD", "Muse S headband, 4 ch 256 Hz, native Bluetooth (--mac-address)"),
    "muse-2": ("MUSE_2_BOARD", "Muse 2 headband, 4 ch 256 Hz, native Bluetooth (--mac-address)"),
    "synthetic": ("SYNTHETIC_BOARD", "BrainFlow synthetic board, 16 ch 250 Hz, no hardware"),
    "playback": ("PLAYBACK_FILE_BOARD", "replay of a BrainFlow CSV in real time (--file)"),
}
#: Valid board names, in display order.
BOARD_NAMES: tuple[str, ...] = tuple(BOARDS)
#: Boards that talk through a serial dongle (port auto-detected when unambiguous).
SERIAL_BOARDS = frozenset({"openbci", "cyton", "cyton-daisy", "ganglion"})
#: Boards on Bluetooth LE (native BLE through SimpleBLE).
BLE_BOARDS = frozenset({"muse-s", "muse-2"})


def transport(board: str) -> str:
    """How ``board`` is reached: ``"serial"``, ``"ble"`` or ``"none"`` (synthetic, playback)."""
    if board in SERIAL_BOARDS:
        return "serial"
    if board in BLE_BOARDS:
        return "ble"
    return "none"
