"""Is this night one of the model's training recordings? (issue 11 point 6, report side)

A score on a night the model was trained on says nothing about other people's nights.
The recorder keeps the file a file source read (``night.json`` ``recording``); the
model card lists its training recordings; :func:`sleepstream.inference.card.
training_recording_match` compares them (sha256 of the file, else its name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def training_check(manifest: dict[str, Any], model: Path | None) -> dict[str, Any]:
    """``training_recording`` (True, False, or None when it cannot be told) and
    ``training_recording_note`` (why, or the warning).

    Parameters
    ----------
    manifest : dict
        The night's ``night.json``.
    model : Path or None
        The model (``.onnx`` or its ``.card.json``) that scored the night; None = the
        shipped model. Its card is used only if its sha256 is the one the night records.

    Raises
    ------
    ModelError
        An explicitly given ``model`` whose card cannot be read.
    """
    from sleepstream.errors import ModelError
    from sleepstream.inference.card import card_path_for, load_card, training_recording_match
    from sleepstream.inference.stager import default_model_path

    def verdict(value: bool | None, note: str) -> dict[str, Any]:
        return {"training_recording": value, "training_recording_note": note}

    recording = manifest.get("recording")
    if not isinstance(recording, dict) or not isinstance(recording.get("path"), str):
        if manifest.get("time_base") == "system":
            return verdict(False, "a live recording")
        return verdict(None, "night.json does not name the recording it was made from")
    try:
        card = load_card(card_path_for(model) if model is not None else default_model_path())
    except ModelError:
        if model is not None:
            raise
        return verdict(None, "the shipped model's card cannot be read")
    night_sha = str((manifest.get("model") or {}).get("card_sha256") or "")
    if night_sha and night_sha != card.sha256:
        return verdict(
            None,
            f"the night was scored by another model (sha256 {night_sha[:12]}...): pass "
            "--model to check its training recordings",
        )
    if not card.training_recordings:
        return verdict(None, f"the model card {card.path} lists no training recordings")
    name = recording.get("name") or Path(recording["path"]).name
    if training_recording_match(card, recording["path"]):
        return verdict(
            True,
            f"{name} is one of the model's training recordings: agreement on it is not a "
            "generalisation result",
        )
    return verdict(False, f"{name} is not among the model's training recordings")
