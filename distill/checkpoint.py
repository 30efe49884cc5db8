"""Checkpoints without pickle: safetensors weights, safetensors optimiser state, JSON sidecar.

A checkpoint ``<dir>/<stem>.safetensors`` has:

- ``<stem>.safetensors``: the model's ``state_dict`` (weights and BN buffers);
- ``<stem>.json``: the sidecar — model name and build kwargs, the training config, the split
  (:meth:`distill.folds.Fold.to_json`), the training state (stage, epoch, best validation
  macro-F1, history) and free-form metadata;
- ``<stem>.optim.safetensors`` (optional): the optimiser state, tensors stored flat as
  ``state.<param index>.<key>``; scalar hyper-parameters of the parameter groups go to the
  sidecar. Resuming from it restores Adam's moments exactly.

Loading never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sleepstream.errors import ModelError

FORMAT = "sleepstream-distill-checkpoint/1"


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def optim_path(path: Path) -> Path:
    return Path(path).with_suffix(".optim.safetensors")


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"state.{pid}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = val
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _staged(path: Path) -> Path:
    """Where the next version of a checkpoint file is written before it replaces ``path``."""
    return path.with_name(path.name + ".new")


def save_checkpoint(
    path: Path | str,
    model: torch.nn.Module,
    sidecar: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write weights, sidecar JSON and (optionally) the optimiser state; return the weights path.

    Crash-safe as a set: the three files are first written as ``*.new`` (the sidecar last,
    its presence marking a complete set), then renamed over the old ones. A reader that
    finds a complete ``*.new`` set finishes the renames (:func:`_settle`); an incomplete
    one is discarded, so a process killed mid-write leaves the previous checkpoint or the
    new one, never a mix (what resuming after a killed rank relies on).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _settle(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(_staged(path)), metadata={"format": FORMAT})
    meta = dict(sidecar, format=FORMAT)
    if optimizer is not None:
        tensors, rest = _optimizer_tensors(optimizer)
        save_file(tensors, str(_staged(optim_path(path))), metadata={"format": FORMAT})
        meta["optimizer"] = rest
    else:
        meta.pop("optimizer", None)
    tmp = sidecar_path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    tmp.replace(_staged(sidecar_path(path)))  # the set is complete from here on
    _settle(path)
    return path


def _settle(path: Path) -> None:
    """Finish an interrupted :func:`save_checkpoint` of ``path`` (or drop a partial one)."""
    side_new = _staged(sidecar_path(path))
    files = (path, optim_path(path))
    if not side_new.is_file():
        for f in files:
            _staged(f).unlink(missing_ok=True)
        return
    try:  # another process (a torchrun peer) may be settling the same set
        has_optim = "optimizer" in json.loads(side_new.read_text())
        for f in files:
            if _staged(f).is_file():
                _staged(f).replace(f)
        if not has_optim:
            optim_path(path).unlink(missing_ok=True)
        side_new.replace(sidecar_path(path))
    except FileNotFoundError:
        pass


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_sidecar(path: Path | str) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint; :class:`ModelError` if missing or malformed."""
    _settle(Path(path))
    side = sidecar_path(Path(path))
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise ModelError(f"{side}: checkpoint sidecar not found") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{side}: invalid JSON ({exc.msg})") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{side}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_weights(path: Path | str, model: torch.nn.Module) -> None:
    """Load safetensors weights into ``model`` (strict)."""
    path = Path(path)
    _settle(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot load weights ({str(exc).splitlines()[0]})") from None


def load_optimizer(path: Path | str, optimizer: torch.optim.Optimizer, meta: dict) -> bool:
    """Restore optimiser state saved by :func:`save_checkpoint`; False if none was saved."""
    opath = optim_path(Path(path))
    if not opath.is_file() or "optimizer" not in meta:
        return False
    tensors = load_file(str(opath))
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = val
    for name, val in meta["optimizer"]["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    groups = meta["optimizer"]["param_groups"]
    for g in groups:
        for k, v in g.items():
            if isinstance(v, list) and k != "params":
                g[k] = tuple(v)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return True


def load_model(path: Path | str, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model named in the sidecar and load its weights; returns (model, sidecar)."""
    from distill import models

    meta = read_sidecar(path)
    try:
        model = models.build(meta["model"], **meta.get("model_kwargs", {}))
    except KeyError as exc:
        raise ModelError(f"{sidecar_path(Path(path))}: unknown model ({exc})") from None
    load_weights(path, model)
    return model.to(device).eval(), meta
