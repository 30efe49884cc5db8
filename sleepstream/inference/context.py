"""Per-device context for streaming inference: each epoch is encoded once.

:class:`ContextStager` keeps, for every device key, a ring of the last ``seq_len - 1``
per-epoch *states* (split mode: the encoder's ``(D,)`` output; window mode: the model
input epoch itself, ``D = 3000``). For one batch of new epochs, from any mix of devices:

1. one encoder call over all new epochs (``Stager.encode``, chunked over the ORT pool);
2. each new epoch's window = its device's ring + the batch's earlier epochs of that
   device + itself; one head call over all windows (``Stager.head``);
3. the causal prediction of epoch ``t`` is the window's last position; with
   ``lookahead = K`` the revision of epoch ``t - K`` is position ``-1 - K`` of the *same*
   output (no second model call).

Padding, exactly as in training (the card's ``pad``): before a device's first epoch the
window holds pad states (``zero_epoch``: the encoding of an all-zero epoch), or (with
``truncate``) is shorter.

Ring invariant: ring row ``i`` holds epoch ``next_index - (seq_len - 1) + i``. Every
epoch enters the ring, scored or not (a gap epoch's filled samples are context, as they
are in a window today), so indices stay contiguous through gaps and source re-opens (the
DSP keeps its grid and emits the missing time as gap epochs). An epoch whose index is not
the next one raises :class:`ContextError` before anything of the batch is changed. After a
daemon restart :meth:`ContextStager.load_state` restores a ring; it is used only if the
device's first epoch continues its index (else the device starts padded, like a new
night).

Model input = ``samples`` (µV) × ``input_scale`` (the epoch's causal normalisation
factor, computed at its own time; see :mod:`sleepstream.dsp.normalise`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sleepstream.errors import UsageError
from sleepstream.inference.stager import Stager, scored, softmax, unscored
from sleepstream.types import EPOCH_SAMPLES, StagePrediction

log = logging.getLogger(__name__)

#: Format tag of :meth:`ContextStager.state_dict`.
CONTEXT_FORMAT = "sleepstream-context/1"


class ContextError(RuntimeError):
    """A device's epoch indices are not contiguous (a bug upstream of the stager).

    Attributes
    ----------
    device : hashable
        The device.
    position : int
        Position in the scored batch of the first epoch that does not continue it.
    """

    def __init__(self, message: str, device: Hashable, position: int) -> None:
        super().__init__(message)
        self.device = device
        self.position = position


class ScoringEpoch(Protocol):
    """What the context stager reads from an epoch (``sleepstream.types.Epoch``)."""

    @property
    def index(self) -> int: ...
    @property
    def samples(self) -> np.ndarray: ...
    @property
    def input_scale(self) -> float: ...
    @property
    def quality(self) -> tuple[str, ...]: ...
    @property
    def unscored_reasons(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Scored:
    """The stager's output for one submitted ``(device, epoch)``.

    Attributes
    ----------
    device : hashable
        The device key the epoch came with (the device name in the daemon).
    epoch : ScoringEpoch
        The submitted epoch.
    prediction : StagePrediction
        Causal verdict of ``epoch.index`` (UNSCORED with reasons when not scorable).
    revised : StagePrediction or None
        With ``lookahead = K``: the verdict of epoch ``epoch.index - K`` of the same
        device made with this epoch as the newest context (None when that epoch was not
        scorable, is outside the device's context, or ``K == 0``).
    revised_epoch : ScoringEpoch or None
        The epoch ``revised`` is about.
    """

    device: Hashable
    epoch: Any
    prediction: StagePrediction
    revised: StagePrediction | None = None
    revised_epoch: Any = None


@dataclass
class _Ring:
    """One device: the last ``seq_len - 1`` states (oldest first) and their finiteness."""

    states: np.ndarray
    finite: np.ndarray
    next_index: int | None = None
    held: int = 0  # real (non-pad) rows at the end of ``states``
    recent: deque[ScoringEpoch] = field(default_factory=deque)  # last K epochs (revisions)
    resumed: bool = False


def check_lookahead(k: int, seq_len: int) -> int:
    """``k`` if a model with ``seq_len`` epochs of context can revise ``k`` epochs back.

    Raises
    ------
    UsageError
        Naming ``--lookahead`` and the model's limit (``seq_len - 1`` epochs).
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < seq_len:
        raise UsageError(
            f"--lookahead {k}: this model looks at most {seq_len - 1} epochs ahead "
            f"(its context is {seq_len} epochs)"
        )
    return k


def model_input(epoch: ScoringEpoch) -> np.ndarray:
    """``samples * input_scale`` as float32 ``(3000,)`` (product in float64, as in training)."""
    x = np.asarray(epoch.samples, dtype=np.float64).reshape(-1)
    if x.size != EPOCH_SAMPLES:
        raise ValueError(f"epoch {epoch.index}: {x.size} samples, expected {EPOCH_SAMPLES}")
    return (x * float(epoch.input_scale)).astype(np.float32)


class ContextStager:
    """Streaming predictions per (device key, epoch), each epoch encoded once.

    Parameters
    ----------
    stager : Stager
        A loaded model (window or split mode).
    lookahead : int
        ``K > 0``: also revise epoch ``t - K`` from epoch ``t``'s output (``K < seq_len``).
    strict : bool
        True: an epoch that does not continue its device's indices raises
        :class:`ContextError` (nothing of the batch is changed). False (the daemon): the
        error is logged, counted in :attr:`context_resets` and that device's context
        restarts padded at that epoch; the rest of the batch is scored as usual.

    Attributes
    ----------
    model_id, card, seq_len, normalisation :
        The model's (see :class:`~sleepstream.inference.stager.Stager`).
    context_resets : dict
        Device -> number of contexts restarted because an index did not follow.

    Notes
    -----
    Not thread-safe: call :meth:`score` from one thread at a time (the inference task);
    ORT work inside a call is spread over the stager's bounded pool.
    """

    def __init__(self, stager: Stager, *, lookahead: int = 0, strict: bool = True) -> None:
        self.stager = stager
        self.model_id = stager.model_id
        self.card = stager.card
        self.seq_len = stager.seq_len
        self.normalisation = stager.normalisation
        self.truncate = stager.pad_kind == "truncate"
        self.strict = strict
        self.context_resets: dict[Hashable, int] = {}
        self._rings: dict[Hashable, _Ring] = {}
        self.lookahead = check_lookahead(lookahead, self.seq_len)

    # -- per device -----------------------------------------------------------------
    def _new_ring(self) -> _Ring:
        n, d = self.seq_len - 1, self.stager.state_dim
        return _Ring(
            states=np.broadcast_to(self.stager.pad_state, (n, d)).copy(),
            finite=np.ones(n, bool),
            recent=deque(maxlen=self.lookahead),
        )

    def reset(self, key: Hashable) -> None:
        """Forget a device's context: its next epoch starts padded (a new night)."""
        self._rings.pop(key, None)

    def next_index(self, key: Hashable) -> int | None:
        """The epoch index the device's ring expects next (None: no context yet)."""
        ring = self._rings.get(key)
        return None if ring is None else ring.next_index

    @property
    def devices(self) -> list[Hashable]:
        """Keys with a context."""
        return list(self._rings)

    def state_dict(self, key: Hashable) -> dict[str, Any] | None:
        """The device's ring for persistence (numpy arrays + scalars; None if no context)."""
        ring = self._rings.get(key)
        if ring is None or ring.next_index is None:
            return None
        return {
            "format": CONTEXT_FORMAT,
            "model_id": self.stager.model_id,
            "next_index": int(ring.next_index),
            "held": int(ring.held),
            "states": ring.states.copy(),
            "finite": ring.finite.copy(),
        }

    def load_state(self, key: Hashable, state: dict[str, Any]) -> bool:
        """Restore a ring saved by :meth:`state_dict` (e.g. before a daemon restart).

        It is used only if the device's next epoch has index ``state["next_index"]``
        (the grid continues); otherwise that epoch starts a padded context. Returns False
        (and keeps no state) when it belongs to another model or has the wrong shape.
        """
        n, d = self.seq_len - 1, self.stager.state_dim
        try:
            states = np.asarray(state["states"], dtype=np.float32)
            finite = np.asarray(state["finite"], dtype=bool)
            ok = (
                state.get("format") == CONTEXT_FORMAT
                and state.get("model_id") == self.stager.model_id
                and states.shape == (n, d)
                and finite.shape == (n,)
            )
            nxt, held = int(state["next_index"]), int(state["held"])
        except (KeyError, TypeError, ValueError):
            return False
        if not ok:
            return False
        ring = self._new_ring()
        ring.states, ring.finite, ring.next_index = states, finite, nxt
        ring.held, ring.resumed = min(max(held, 0), n), True
        self._rings[key] = ring
        return True

    # -- scoring --------------------------------------------------------------------
    def _plan(self, items: Sequence[tuple[Hashable, Any]]) -> dict[Hashable, list[int]]:
        """Positions of each device's epochs in ``items``; checks contiguity first."""
        by_key: dict[Hashable, list[int]] = {}
        expect: dict[Hashable, int | None] = {}
        stale: list[Hashable] = []
        for i, (key, ep) in enumerate(items):
            if key not in expect:
                ring = self._rings.get(key)
                expect[key] = None if ring is None else ring.next_index
                if ring is not None and ring.resumed and ring.next_index != ep.index:
                    expect[key] = None  # a restored ring the grid does not continue
                    stale.append(key)
            want = expect[key]
            if want is not None and ep.index != want:
                raise ContextError(
                    f"device {key!r}: epoch {ep.index} follows epoch {want - 1}; "
                    "ring indices must be contiguous (every epoch, gaps included, in order)",
                    key,
                    i,
                )
            expect[key] = ep.index + 1
            by_key.setdefault(key, []).append(i)
        for key in stale:  # only now that the whole batch is valid
            self.reset(key)
        return by_key

    def score(
        self, items: Sequence[tuple[Hashable, Any]], lookahead: int | None = None
    ) -> list[Scored]:
        """Score new epochs of any devices; one :class:`Scored` per item, same order.

        Parameters
        ----------
        items : sequence of (key, epoch)
            Each device's epochs in index order, continuing its ring; devices may
            interleave. ``epoch.samples`` is ``(3000,)`` µV, ``epoch.input_scale`` its
            normalisation factor.
        lookahead : int, optional
            The stager's ``lookahead`` (None); another value is accepted only before any
            device has a context (the ring keeps the last K epochs), and then kept.

        Raises
        ------
        ContextError
            With ``strict``: a device's index is not the next one (nothing is changed).
        UsageError
            A lookahead the model cannot give (see :func:`check_lookahead`).
        """
        if lookahead is not None and lookahead != self.lookahead:
            if self._rings:
                raise ValueError(
                    f"lookahead {lookahead}: this stager already scores with {self.lookahead}"
                )
            self.lookahead = check_lookahead(lookahead, self.seq_len)
        if not items:
            return []
        try:
            by_key = self._plan(items)
        except ContextError as exc:
            if self.strict:
                raise
            log.error("%s; that device's context restarts", exc)
            self.context_resets[exc.device] = self.context_resets.get(exc.device, 0) + 1
            head = self.score(items[: exc.position])
            self.reset(exc.device)
            return head + self.score(items[exc.position :])
        return self._score(items, by_key)

    def _score(
        self, items: Sequence[tuple[Hashable, Any]], by_key: dict[Hashable, list[int]]
    ) -> list[Scored]:
        x = np.stack([model_input(ep) for _, ep in items])
        finite = np.isfinite(x).all(axis=1)
        x[~finite] = 0.0
        states = self.stager.encode(x)
        S, K, n_hist = self.seq_len, self.lookahead, self.seq_len - 1
        windows: list[np.ndarray] = []
        wants: list[tuple[int, int, Any]] = []  # (item, window length, epoch to revise)
        out: list[Scored | None] = [None] * len(items)
        for key, idx in by_key.items():
            ring = self._rings.get(key) or self._new_ring()
            seq = np.concatenate([ring.states, states[idx]])
            ok = np.concatenate([ring.finite, finite[idx]])
            recent = list(ring.recent)
            for j, i in enumerate(idx):
                ep = items[i][1]
                real = ring.held + j + 1  # real epochs up to and including this one
                lo = j + (S - min(real, S) if self.truncate else 0)
                win, win_ok = seq[lo : j + S], ok[lo : j + S]
                causal = not ep.unscored_reasons and win_ok.all()
                past = recent[-K] if K and len(recent) >= K else None
                rev = past is not None and not past.unscored_reasons and win_ok.all()
                if causal or rev:
                    windows.append(win)
                    wants.append((i, len(win), past if rev else None))
                reasons = ep.unscored_reasons or (() if win_ok.all() else ("nonfinite",))
                if reasons:
                    pred = unscored(ep.index, self.stager.model_id, ep.quality, reasons)
                    out[i] = Scored(key, ep, pred)
                if K:
                    recent.append(ep)
            held = min(ring.held + len(idx), n_hist)
            ring.states, ring.finite = seq[len(seq) - n_hist :].copy(), ok[len(ok) - n_hist :]
            ring.held, ring.next_index, ring.resumed = held, items[idx[-1]][1].index + 1, False
            if K:
                ring.recent = deque(recent[-K:], maxlen=K)
            self._rings[key] = ring
        self._head(items, windows, wants, out)
        return [o for o in out if o is not None]

    def _head(
        self,
        items: Sequence[tuple[Hashable, Any]],
        windows: list[np.ndarray],
        wants: list[tuple[int, int, Any]],
        out: list[Scored | None],
    ) -> None:
        """One head call per window length (one in steady state); fill ``out``."""
        mid, K = self.stager.model_id, self.lookahead
        for length in sorted({w[1] for w in wants}):
            rows = [r for r, w in enumerate(wants) if w[1] == length]
            probs = softmax(self.stager.head(np.stack([windows[r] for r in rows])))
            for r, p in zip(rows, probs, strict=True):
                i, _, past = wants[r]
                key, ep = items[i]
                done = out[i]
                pred = (
                    done.prediction
                    if done is not None
                    else scored(ep.index, p[-1], mid, ep.quality)
                )
                revision = None
                if past is not None:
                    revision = scored(past.index, p[length - 1 - K], mid, past.quality)
                out[i] = Scored(key, ep, pred, revision, past)
