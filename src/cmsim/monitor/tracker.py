"""Alarm persistence: open an alarm on ``k_on`` consecutive bad samples, clear it on ``k_off``
good ones (:class:`RunTracker`; the quantile policy's feeder and NIR out-of-limit alarms).

The state machine runs in a compiled loop over the samples; only the openings and clearings
come back to Python, and any chunking of a sample stream gives the same events.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cmsim.errors import ParameterError

__all__ = ["RunTracker"]


@njit(cache=True)
def _next_bad(bad, words, i):  # pragma: no cover - compiled
    """Index of the first ``bad`` sample at or after ``i`` (``bad.size`` if none); ``words``:
    the first ``8 * words.size`` flags read as 64-bit words (runs of good samples are skipped
    eight at a time)."""
    n = bad.size
    while i < n and i & 7:
        if bad[i]:
            return i
        i += 1
    w = i >> 3
    while w < words.size and words[w] == 0:
        w += 1
    i = max(i, w << 3)
    while i < n:
        if bad[i]:
            return i
        i += 1
    return n


@njit(cache=True)
def _track_kernel(bad, words, times, k_on, k_off, state, kinds, index, tref, k0, dt, i0
                  ):  # pragma: no cover
    """Per-sample alarm state machine from sample ``i0`` on; state = [open, bad_run, good_run,
    first_bad, last_bad]. Sample times: ``times`` or, when it is empty, the grid
    ``(k0 + i) dt``. Stops after the event that fills ``kinds``; returns (events, next i).
    ``words``: ``bad`` as 64-bit words (see :func:`_next_bad`): while the alarm is closed, a
    good sample only resets the bad run, so runs of them are skipped in one step."""
    grid = times.size == 0
    cap = kinds.size
    is_open = state[0] != 0.0
    nb = int(state[1])
    ng = int(state[2])
    first = state[3]
    last = state[4]
    n_out = 0
    i = i0
    while i < bad.size and n_out < cap:
        if not is_open and not bad[i]:
            nb = 0
            i = _next_bad(bad, words, i + 1)
            continue
        if bad[i]:
            ti = (k0 + i) * dt if grid else times[i]
            if nb == 0:
                first = ti
            last = ti
            nb += 1
            ng = 0
            if not is_open and nb >= k_on:
                is_open = True
                kinds[n_out] = 1
                index[n_out] = i
                tref[n_out] = first
                n_out += 1
        else:
            nb = 0
            if is_open:
                ng += 1
                if ng >= k_off:
                    is_open = False
                    ng = 0
                    kinds[n_out] = 0
                    index[n_out] = i
                    tref[n_out] = last
                    n_out += 1
        i += 1
    state[0] = 1.0 if is_open else 0.0
    state[1] = min(nb, 1 << 30)
    state[2] = ng
    state[3] = first
    state[4] = last
    return n_out, i


class RunTracker:
    """Open/close an alarm on ``k_on`` consecutive bad samples, clear on ``k_off`` good ones.

    Parameters
    ----------
    k_on, k_off : int
        Persistence to open and to clear [samples], >= 1.

    Notes
    -----
    :meth:`update` takes chunks of a sample stream; the result depends only on the stream, not
    on the chunking. The state machine runs in a compiled loop over the samples (a few ns per
    sample); only the openings and clearings come back to Python.
    """

    def __init__(self, k_on: int = 1, k_off: int = 1) -> None:
        self.k_on, self.k_off = int(k_on), int(k_off)
        if self.k_on < 1 or self.k_off < 1:
            raise ParameterError("k_on/k_off", (k_on, k_off), "must be >= 1")
        self._state = np.zeros(5)

    @property
    def open(self) -> bool:
        """Whether the alarm is open."""
        return bool(self._state[0])

    def update_arrays(self, times: np.ndarray, bad: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Process a chunk; return ``(is_open_event, index, t_ref)`` arrays (see :meth:`update`)."""
        return self._run(np.ascontiguousarray(times, dtype=np.float64), bad, 0, 0.0)

    def _run(self, t: np.ndarray, bad: np.ndarray, k0: int, dt: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = np.ascontiguousarray(bad, dtype=np.bool_)
        words = b[:b.size - b.size % 8].view(np.uint64)  # flags eight at a time
        # events are few: small buffers, refilled until the chunk is done
        cap = 64
        parts = []
        i = 0
        while True:
            kinds = np.empty(cap, np.int8)
            index = np.empty(cap, np.int64)
            tref = np.empty(cap, np.float64)
            m, i = _track_kernel(b, words, t, self.k_on, self.k_off, self._state, kinds,
                                 index, tref, k0, dt, i)
            parts.append((kinds[:m], index[:m], tref[:m]))
            if i >= b.size:
                break
        if len(parts) == 1:
            kinds, index, tref = parts[0]
        else:
            kinds, index, tref = (np.concatenate(x) for x in zip(*parts, strict=True))
        return kinds.astype(bool), index, tref

    def update_grid(self, k0: int, dt: float, bad: np.ndarray
                    ) -> list[tuple[str, int, float]]:
        """:meth:`update` for samples at the grid times ``(k0 + i) dt`` [s] (no time array)."""
        kinds, index, tref = self._run(np.empty(0), bad, int(k0), float(dt))
        return [("open" if k else "close", i, t) for k, i, t in
                zip(kinds.tolist(), index.tolist(), tref.tolist(), strict=True)]

    def update(self, times: np.ndarray, bad: np.ndarray) -> list[tuple[str, int, float]]:
        """Process a chunk; return ``(kind, index, t_first)`` for each opening and clearing.

        ``kind`` is ``"open"`` (index of the sample that opens; ``t_first`` the time of the
        first bad sample of that run) or ``"close"`` (index of the sample that clears;
        ``t_first`` the time of the last bad sample before it).
        """
        kinds, index, tref = self.update_arrays(times, bad)
        return [("open" if k else "close", i, t) for k, i, t in
                zip(kinds.tolist(), index.tolist(), tref.tolist(), strict=True)]
