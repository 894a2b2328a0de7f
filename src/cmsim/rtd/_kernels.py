"""Numba kernels of the RTD core (private).

Every kernel is a plain function over arrays with explicit state, compiled lazily with
``@njit(cache=True)`` and no eager signature. Arrays are indexed through slices, never through a
signed ``t - k`` offset, so the compiler can drop bounds logic and vectorise.

Conventions
-----------
* ``conv_valid*``: ``out[m] = sum_i wr[i] * ext[m + i]`` for ``m < ext.size - K + 1`` where
  ``wr`` is the *reversed* kernel. With ``ext = [K-1 past inputs, new inputs]`` this is the causal
  convolution ``y[k] = sum_j w[j] x[k-j]`` of the new inputs.
* ``tis_*``: exact chain of equal tanks in scaled mass-state form. ``q`` holds the tank masses
  divided by the time step (``M_i / dt``, so it has the units of the input); per tick the input is
  added to tank 0, the outflow is ``c . q`` and the chain is advanced by the lower-triangular
  Toeplitz matrix with first column ``phi``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cmsim.rtd import _kernels_unrolled as _ku

#: Tank counts with fused cascade kernels -> their driver family.
_FUSED_FAMILIES = {
    1: (_ku.tisc1_run_split, _ku.tisc1_rows_serial, _ku.tisc1_rows_parallel),
    5: (_ku.tisc5_run_split, _ku.tisc5_rows_serial, _ku.tisc5_rows_parallel),
}

#: Fast-math flags of the FIR kernels: reassociation (vectorised tap sums) and FMA contraction,
#: but *not* ``nnan``/``ninf``, so that NaN and infinity keep their IEEE meaning and the
#: finiteness probe the kernels return cannot be optimised away.
_FIR_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=_FIR_FASTMATH)
def conv_valid(ext, wr, out):  # pragma: no cover - compiled
    """Register-blocked direct FIR: 8 outputs accumulated in registers per pass over ``wr``.

    Returns a finiteness probe: ``0.0`` when every output is finite, NaN otherwise (the sum of
    ``0 * output``). Every input sample reaches at least one output through a finite tap (and
    ``0 * inf`` is NaN), so a non-finite input always shows up here, at no extra pass over the
    data; a finite input whose outputs overflow shows up too (the caller tells them apart).
    """
    k = wr.size
    m_total = out.size
    m0 = 0
    probe = 0.0
    while m0 + 8 <= m_total:
        seg = ext[m0 : m0 + k + 7]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        a4 = 0.0
        a5 = 0.0
        a6 = 0.0
        a7 = 0.0
        for i in range(k):
            wi = wr[i]
            a0 += wi * seg[i]
            a1 += wi * seg[i + 1]
            a2 += wi * seg[i + 2]
            a3 += wi * seg[i + 3]
            a4 += wi * seg[i + 4]
            a5 += wi * seg[i + 5]
            a6 += wi * seg[i + 6]
            a7 += wi * seg[i + 7]
        o = out[m0 : m0 + 8]
        o[0] = a0
        o[1] = a1
        o[2] = a2
        o[3] = a3
        o[4] = a4
        o[5] = a5
        o[6] = a6
        o[7] = a7
        probe += (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7) * 0.0
        m0 += 8
    for m in range(m0, m_total):
        seg = ext[m : m + k]
        acc = 0.0
        for i in range(k):
            acc += wr[i] * seg[i]
        out[m] = acc
        probe += acc * 0.0
    return probe


@njit(cache=True, fastmath=_FIR_FASTMATH)
def conv_causal(x, wr, y):  # pragma: no cover - compiled
    """One-shot causal convolution of a 1-D ``x`` (zero history) into ``y`` (same length).

    Returns the finiteness probe of :func:`conv_valid` (0.0, or NaN for a non-finite output).
    """
    k = wr.size
    n = x.size
    head = min(k - 1, n)
    probe = 0.0
    if head > 0:
        ext = np.zeros(k - 1 + head)
        ext[k - 1 :] = x[:head]
        probe += conv_valid(ext, wr, y[:head])
    if n > head:
        probe += conv_valid(x, wr, y[head:])
    return probe


@njit(cache=True, fastmath=_FIR_FASTMATH)
def conv_causal_rows_serial(x, wr, y):  # pragma: no cover - compiled
    """Row-wise :func:`conv_causal` over a 2-D (batch, time) array, one thread (summed probe)."""
    probe = 0.0
    for b in range(x.shape[0]):
        probe += conv_causal(x[b], wr, y[b])
    return probe


@njit(cache=True, fastmath=_FIR_FASTMATH, parallel=True)
def conv_causal_rows_parallel(x, wr, y):  # pragma: no cover - compiled
    """Row-wise :func:`conv_causal`, ``prange`` over rows (summed probe)."""
    probe = 0.0
    for b in prange(x.shape[0]):
        probe += conv_causal(x[b], wr, y[b])
    return probe


@njit(cache=True, fastmath=_FIR_FASTMATH)
def conv_stream_rows(hist, x, wr, y):  # pragma: no cover - compiled
    """Streaming FIR step for a 2-D chunk; ``hist`` (batch, K-1) holds the past inputs.

    Writes ``y`` and updates ``hist`` in place to the last K-1 inputs. Returns the finiteness
    probe of :func:`conv_valid` (the caller restores ``hist`` when it is NaN).
    """
    k = wr.size
    n = x.shape[1]
    km1 = k - 1
    head = min(km1, n)
    ext = np.empty(km1 + head)
    probe = 0.0
    for b in range(x.shape[0]):
        xb = x[b]
        hb = hist[b]
        yb = y[b]
        if head > 0:
            ext[:km1] = hb
            ext[km1:] = xb[:head]
            probe += conv_valid(ext, wr, yb[:head])
        if n > head:
            probe += conv_valid(xb, wr, yb[head:])
        # new history: the last K-1 of [hist, x]
        if km1 > 0:
            if n >= km1:
                hb[:] = xb[n - km1 :]
            else:
                hb[: km1 - n] = hb[n:].copy()
                hb[km1 - n :] = xb
    return probe


@njit(cache=True, fastmath={"contract"})
def tis_run(x, y, q, phi, c):  # pragma: no cover - compiled
    """Exact tanks-in-series chain over a 1-D chunk, state ``q`` (scaled tank masses) in place.

    Inside the loop the state is held *after* the injection of the current tick (``v``), so the
    loop-carried dependency of every tank is a single fused multiply-add.
    """
    n = q.size
    nx = x.size
    if nx == 0:
        return
    v = q.copy()
    v[0] += x[0]
    for k in range(nx):
        acc = 0.0
        for j in range(n):
            acc += c[j] * v[j]
        y[k] = acc
        # v <- Phi v (upper tanks first so that the old lower values are still there)
        for i in range(n - 1, 0, -1):
            t = 0.0
            for j in range(i):
                t += phi[i - j] * v[j]
            v[i] = t + phi[0] * v[i]
        if k + 1 < nx:
            v[0] = phi[0] * v[0] + x[k + 1]
        else:
            v[0] = phi[0] * v[0]
    q[:] = v


@njit(cache=True, fastmath={"contract"})
def tis_run5(x, y, q, phi, c):  # pragma: no cover - compiled
    """:func:`tis_run` for exactly 5 tanks with the state held in registers."""
    nx = x.size
    if nx == 0:
        return
    p0 = phi[0]
    p1 = phi[1]
    p2 = phi[2]
    p3 = phi[3]
    p4 = phi[4]
    c0 = c[0]
    c1 = c[1]
    c2 = c[2]
    c3 = c[3]
    c4 = c[4]
    a0 = q[0] + x[0]
    s1 = q[1]
    s2 = q[2]
    s3 = q[3]
    s4 = q[4]
    for k in range(nx - 1):
        y[k] = c0 * a0 + c1 * s1 + c2 * s2 + c3 * s3 + c4 * s4
        n4 = p4 * a0 + p3 * s1 + p2 * s2 + p1 * s3 + p0 * s4
        n3 = p3 * a0 + p2 * s1 + p1 * s2 + p0 * s3
        n2 = p2 * a0 + p1 * s1 + p0 * s2
        n1 = p1 * a0 + p0 * s1
        a0 = p0 * a0 + x[k + 1]
        s1 = n1
        s2 = n2
        s3 = n3
        s4 = n4
    y[nx - 1] = c0 * a0 + c1 * s1 + c2 * s2 + c3 * s3 + c4 * s4
    q[4] = p4 * a0 + p3 * s1 + p2 * s2 + p1 * s3 + p0 * s4
    q[3] = p3 * a0 + p2 * s1 + p1 * s2 + p0 * s3
    q[2] = p2 * a0 + p1 * s1 + p0 * s2
    q[1] = p1 * a0 + p0 * s1
    q[0] = p0 * a0


@njit(cache=True, fastmath={"contract"})
def tisz_run(x, y, z, a, alpha, c):  # pragma: no cover - compiled
    """Tanks-in-series chain in scaled (Jordan) coordinates over a 1-D chunk.

    ``z`` is the pre-injection state in the basis where the transition matrix is the lower
    bidiagonal ``a I + alpha N``; ``c`` are the output weights in that basis. O(n) per sample.
    """
    n = z.size
    nx = x.size
    if nx == 0:
        return
    v = z.copy()
    v[0] += x[0]
    for k in range(nx):
        acc = 0.0
        for j in range(n):
            acc += c[j] * v[j]
        y[k] = acc
        for i in range(n - 1, 0, -1):
            v[i] = alpha * v[i - 1] + a * v[i]
        if k + 1 < nx:
            v[0] = x[k + 1] + a * v[0]
        else:
            v[0] = a * v[0]
    z[:] = v


@njit(cache=True, fastmath={"contract"})
def tisz_run5(x, y, z, a, alpha, c):  # pragma: no cover - compiled
    """:func:`tisz_run` for exactly 5 tanks with the state held in registers."""
    nx = x.size
    if nx == 0:
        return
    c0 = c[0]
    c1 = c[1]
    c2 = c[2]
    c3 = c[3]
    c4 = c[4]
    v0 = z[0] + x[0]
    v1 = z[1]
    v2 = z[2]
    v3 = z[3]
    v4 = z[4]
    for k in range(nx - 1):
        y[k] = c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3 + c4 * v4
        v4 = alpha * v3 + a * v4
        v3 = alpha * v2 + a * v3
        v2 = alpha * v1 + a * v2
        v1 = alpha * v0 + a * v1
        v0 = x[k + 1] + a * v0
    y[nx - 1] = c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3 + c4 * v4
    z[4] = alpha * v3 + a * v4
    z[3] = alpha * v2 + a * v3
    z[2] = alpha * v1 + a * v2
    z[1] = alpha * v0 + a * v1
    z[0] = a * v0


@njit(cache=True, fastmath={"contract"})
def tisz_rows_serial(x, y, z, a, alpha, c):  # pragma: no cover - compiled
    """Row-wise :func:`tisz_run` over (batch, time) chunks; ``z`` is (batch, n)."""
    five = c.size == 5
    for b in range(x.shape[0]):
        if five:
            tisz_run5(x[b], y[b], z[b], a, alpha, c)
        else:
            tisz_run(x[b], y[b], z[b], a, alpha, c)


@njit(cache=True, fastmath={"contract"}, parallel=True)
def tisz_rows_parallel(x, y, z, a, alpha, c):  # pragma: no cover - compiled
    """Row-wise :func:`tisz_run` with ``prange`` over the batch rows."""
    five = c.size == 5
    for b in prange(x.shape[0]):
        if five:
            tisz_run5(x[b], y[b], z[b], a, alpha, c)
        else:
            tisz_run(x[b], y[b], z[b], a, alpha, c)


@njit(cache=True, fastmath={"contract"})
def tis_rows_serial(x, y, q, phi, c):  # pragma: no cover - compiled
    """Row-wise :func:`tis_run` over (batch, time) chunks; ``q`` is (batch, n)."""
    five = phi.size == 5
    for b in range(x.shape[0]):
        if five:
            tis_run5(x[b], y[b], q[b], phi, c)
        else:
            tis_run(x[b], y[b], q[b], phi, c)


@njit(cache=True, fastmath={"contract"}, parallel=True)
def tis_rows_parallel(x, y, q, phi, c):  # pragma: no cover - compiled
    """Row-wise :func:`tis_run` with ``prange`` over the batch rows."""
    five = phi.size == 5
    for b in prange(x.shape[0]):
        if five:
            tis_run5(x[b], y[b], q[b], phi, c)
        else:
            tis_run(x[b], y[b], q[b], phi, c)


# ----------------------------------------------------------------------------- cascade form
# The cascade kernels (register-resident sections and FIR, fused kernels per tank count, and one
# driver family per kernel family) are generated by tools/gen_unrolled_kernels.py; see
# :func:`cascade_family` for how a caller picks the family of its tank count.


def cascade_family(n: int):
    """The cascade drivers for ``n`` tanks: ``(run_split, rows_serial, rows_parallel)``.

    A fused family (``n`` in ``FUSED``) when there is one, else the generic family. Choosing in
    Python keeps numba from compiling the families a run never uses.
    """
    fused = _FUSED_FAMILIES.get(n)
    if fused is not None:
        return fused
    return (_ku.tisc_run_split, _ku.tisc_rows_serial, _ku.tisc_rows_parallel)
