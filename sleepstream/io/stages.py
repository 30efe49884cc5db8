"""Stage vocabularies of the supported sources, mapped to AASM codes.

R&K scorings (Sleep-EDF, DREAMS) become AASM with S1 -> N1, S2 -> N2, S3 and S4 -> N3,
REM -> REM; movement time and unknown (``?``) epochs become :data:`UNSCORED`.
"""

from __future__ import annotations

from collections.abc import Mapping

from sleepstream.errors import HypnogramError, UnknownStageLabelError
from sleepstream.types import UNSCORED, Stage

W, N1, N2, N3, REM = (int(s) for s in Stage)

#: Sleep-EDF ``.hyp``-style text symbols (one per 30 s).
HYP_TEXT_STAGES: Mapping[str, int] = {
    "W": W,
    "1": N1,
    "2": N2,
    "3": N3,
    "4": N3,
    "R": REM,
    "?": UNSCORED,
    "M": UNSCORED,  # movement time, seen in some exports
    "6": UNSCORED,  # movement time in the numeric R&K convention
}

#: EDF+ annotation texts (Sleep-EDF R&K, plus AASM spellings used by other tools).
EDF_ANNOTATION_STAGES: Mapping[str, int] = {
    "sleep stage w": W,
    "sleep stage 1": N1,
    "sleep stage 2": N2,
    "sleep stage 3": N3,
    "sleep stage 4": N3,
    "sleep stage r": REM,
    "sleep stage ?": UNSCORED,
    "sleep stage n1": N1,
    "sleep stage n2": N2,
    "sleep stage n3": N3,
    "sleep stage n4": N3,
    "sleep stage rem": REM,
    "sleep stage unknown": UNSCORED,
    "movement time": UNSCORED,
}

#: DREAMS 5-s hypnogram codes (R&K): 5=W, 4=REM, 3=S1, 2=S2, 1=S3, 0=S4; negatives
#: (-1/-2/-3: movement, unknown) are unscored.
DREAMS_STAGES: Mapping[int, int] = {5: W, 4: REM, 3: N1, 2: N2, 1: N3, 0: N3}

#: ISRUC scorer files (AASM): 0=W, 1=N1, 2=N2, 3=N3, 5=REM. Code 4 is not used by AASM
#: scorers; it is read as an R&K S4 (-> N3) so that old exports still load.
ISRUC_STAGES: Mapping[int, int] = {0: W, 1: N1, 2: N2, 3: N3, 4: N3, 5: REM}


def is_stage_annotation(text: str) -> bool:
    """True for an EDF+ annotation that carries a sleep stage (or movement time)."""
    t = text.strip().lower()
    return t.startswith("sleep stage") or t == "movement time"


def edf_annotation_stage(text: str, source: str) -> int:
    """AASM code of an EDF+ stage annotation; :class:`HypnogramError` if unknown."""
    code = EDF_ANNOTATION_STAGES.get(" ".join(text.strip().lower().split()))
    if code is None:
        raise UnknownStageLabelError(f"{source}: unknown stage label {text.strip()!r}")
    return code


def hyp_text_stage(symbol: str, source: str, line: int) -> int:
    """AASM code of one ``.hyp`` text symbol; :class:`HypnogramError` if unknown."""
    code = HYP_TEXT_STAGES.get(symbol.strip().upper())
    if code is None:
        raise UnknownStageLabelError(
            f"{source}: unknown stage label {symbol.strip()!r} at line {line} "
            f"(expected one of {' '.join(HYP_TEXT_STAGES)})"
        )
    return code


def coded_stage(value: str, table: Mapping[int, int], source: str, line: int) -> int:
    """AASM code of an integer-coded stage (DREAMS, ISRUC); negatives are unscored."""
    try:
        number = int(float(value))
        if number != float(value):
            raise ValueError(value)
    except ValueError:
        raise UnknownStageLabelError(
            f"{source}: unknown stage label {value.strip()!r} at line {line}"
        ) from None
    if number < 0:
        return UNSCORED
    if number not in table:
        raise HypnogramError(
            f"{source}: unknown stage code {number} at line {line} "
            f"(expected one of {sorted(table)} or a negative code for unscored)"
        )
    return table[number]
