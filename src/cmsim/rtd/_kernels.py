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
#: Samples per block of the cascade kernels (the block of the last stage stays in L1).
_CASCADE_BLOCK = 512


@njit(cache=True, fastmath={"contract"})
def _sections1(xsp, bsp, up, a):  # pragma: no cover - compiled
    """Equal first-order sections ``u_i[k] = u_{i-1}[k] + a u_i[k-1]`` over one block.

    ``xsp`` is the block's input, ``bsp`` receives the last section's output and ``up`` holds the
    section states (updated in place). Inside the block the states live in registers (explicit
    branches for ``n <= 8``; a loop-carried state in memory costs about 3x), and the code is
    generated mechanically: section ``i`` reads section ``i - 1`` of the same tick.
    """
    n = up.size
    m = xsp.size
    if n == 1:
        p0 = up[0]
        for k in range(m):
            p0 = xsp[k] + a * p0
            bsp[k] = p0
        up[0] = p0
    elif n == 2:
        p0 = up[0]
        p1 = up[1]
        for k in range(m):
            p0 = xsp[k] + a * p0
            p1 = p0 + a * p1
            bsp[k] = p1
        up[0] = p0
        up[1] = p1
    elif n == 3:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        for k in range(m):
            p0 = xsp[k] + a * p0
            p1 = p0 + a * p1
            p2 = p1 + a * p2
            bsp[k] = p2
        up[0] = p0
        up[1] = p1
        up[2] = p2
    elif n == 4:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        for k in range(m):
            p0 = xsp[k] + a * p0
            p1 = p0 + a * p1
            p2 = p1 + a * p2
            p3 = p2 + a * p3
            bsp[k] = p3
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
    elif n == 5:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        for k in range(m):
            p0 = xsp[k] + a * p0
            p1 = p0 + a * p1
            p2 = p1 + a * p2
            p3 = p2 + a * p3
            p4 = p3 + a * p4
            bsp[k] = p4
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
    elif n == 6:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        p5 = up[5]
        for k in range(m):
            p0 = xsp[k] + a * p0
            p1 = p0 + a * p1
            p2 = p1 + a * p2
            p3 = p2 + a * p3
            p4 = p3 + a * p4
            p5 = p4 + a * p5
            bsp[k] = p5
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
        up[5] = p5
    elif n == 7:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        p5 = up[5]
        p6 = up[6]
        for k in range(m):
            p0 = xsp[k] + a * p0
            p1 = p0 + a * p1
            p2 = p1 + a * p2
            p3 = p2 + a * p3
            p4 = p3 + a * p4
            p5 = p4 + a * p5
            p6 = p5 + a * p6
            bsp[k] = p6
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
        up[5] = p5
        up[6] = p6
    elif n == 8:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        p5 = up[5]
        p6 = up[6]
        p7 = up[7]
        for k in range(m):
            p0 = xsp[k] + a * p0
            p1 = p0 + a * p1
            p2 = p1 + a * p2
            p3 = p2 + a * p3
            p4 = p3 + a * p4
            p5 = p4 + a * p5
            p6 = p5 + a * p6
            p7 = p6 + a * p7
            bsp[k] = p7
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
        up[5] = p5
        up[6] = p6
        up[7] = p7
    else:
        for k in range(m):
            vp = xsp[k] + a * up[0]
            up[0] = vp
            for i in range(1, n):
                vp = vp + a * up[i]
                up[i] = vp
            bsp[k] = vp


@njit(cache=True, fastmath={"contract"})
def _sections2(xsp, bsp, up, xsr, bsr, ur, a):  # pragma: no cover - compiled
    """:func:`_sections1` for two independent lanes ``p`` and ``r``, interleaved per sample."""
    n = up.size
    m = xsp.size
    if n == 1:
        p0 = up[0]
        r0 = ur[0]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            bsp[k] = p0
            bsr[k] = r0
        up[0] = p0
        ur[0] = r0
    elif n == 2:
        p0 = up[0]
        p1 = up[1]
        r0 = ur[0]
        r1 = ur[1]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            p1 = p0 + a * p1
            r1 = r0 + a * r1
            bsp[k] = p1
            bsr[k] = r1
        up[0] = p0
        up[1] = p1
        ur[0] = r0
        ur[1] = r1
    elif n == 3:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        r0 = ur[0]
        r1 = ur[1]
        r2 = ur[2]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            p1 = p0 + a * p1
            r1 = r0 + a * r1
            p2 = p1 + a * p2
            r2 = r1 + a * r2
            bsp[k] = p2
            bsr[k] = r2
        up[0] = p0
        up[1] = p1
        up[2] = p2
        ur[0] = r0
        ur[1] = r1
        ur[2] = r2
    elif n == 4:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        r0 = ur[0]
        r1 = ur[1]
        r2 = ur[2]
        r3 = ur[3]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            p1 = p0 + a * p1
            r1 = r0 + a * r1
            p2 = p1 + a * p2
            r2 = r1 + a * r2
            p3 = p2 + a * p3
            r3 = r2 + a * r3
            bsp[k] = p3
            bsr[k] = r3
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        ur[0] = r0
        ur[1] = r1
        ur[2] = r2
        ur[3] = r3
    elif n == 5:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        r0 = ur[0]
        r1 = ur[1]
        r2 = ur[2]
        r3 = ur[3]
        r4 = ur[4]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            p1 = p0 + a * p1
            r1 = r0 + a * r1
            p2 = p1 + a * p2
            r2 = r1 + a * r2
            p3 = p2 + a * p3
            r3 = r2 + a * r3
            p4 = p3 + a * p4
            r4 = r3 + a * r4
            bsp[k] = p4
            bsr[k] = r4
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
        ur[0] = r0
        ur[1] = r1
        ur[2] = r2
        ur[3] = r3
        ur[4] = r4
    elif n == 6:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        p5 = up[5]
        r0 = ur[0]
        r1 = ur[1]
        r2 = ur[2]
        r3 = ur[3]
        r4 = ur[4]
        r5 = ur[5]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            p1 = p0 + a * p1
            r1 = r0 + a * r1
            p2 = p1 + a * p2
            r2 = r1 + a * r2
            p3 = p2 + a * p3
            r3 = r2 + a * r3
            p4 = p3 + a * p4
            r4 = r3 + a * r4
            p5 = p4 + a * p5
            r5 = r4 + a * r5
            bsp[k] = p5
            bsr[k] = r5
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
        up[5] = p5
        ur[0] = r0
        ur[1] = r1
        ur[2] = r2
        ur[3] = r3
        ur[4] = r4
        ur[5] = r5
    elif n == 7:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        p5 = up[5]
        p6 = up[6]
        r0 = ur[0]
        r1 = ur[1]
        r2 = ur[2]
        r3 = ur[3]
        r4 = ur[4]
        r5 = ur[5]
        r6 = ur[6]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            p1 = p0 + a * p1
            r1 = r0 + a * r1
            p2 = p1 + a * p2
            r2 = r1 + a * r2
            p3 = p2 + a * p3
            r3 = r2 + a * r3
            p4 = p3 + a * p4
            r4 = r3 + a * r4
            p5 = p4 + a * p5
            r5 = r4 + a * r5
            p6 = p5 + a * p6
            r6 = r5 + a * r6
            bsp[k] = p6
            bsr[k] = r6
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
        up[5] = p5
        up[6] = p6
        ur[0] = r0
        ur[1] = r1
        ur[2] = r2
        ur[3] = r3
        ur[4] = r4
        ur[5] = r5
        ur[6] = r6
    elif n == 8:
        p0 = up[0]
        p1 = up[1]
        p2 = up[2]
        p3 = up[3]
        p4 = up[4]
        p5 = up[5]
        p6 = up[6]
        p7 = up[7]
        r0 = ur[0]
        r1 = ur[1]
        r2 = ur[2]
        r3 = ur[3]
        r4 = ur[4]
        r5 = ur[5]
        r6 = ur[6]
        r7 = ur[7]
        for k in range(m):
            p0 = xsp[k] + a * p0
            r0 = xsr[k] + a * r0
            p1 = p0 + a * p1
            r1 = r0 + a * r1
            p2 = p1 + a * p2
            r2 = r1 + a * r2
            p3 = p2 + a * p3
            r3 = r2 + a * r3
            p4 = p3 + a * p4
            r4 = r3 + a * r4
            p5 = p4 + a * p5
            r5 = r4 + a * r5
            p6 = p5 + a * p6
            r6 = r5 + a * r6
            p7 = p6 + a * p7
            r7 = r6 + a * r7
            bsp[k] = p7
            bsr[k] = r7
        up[0] = p0
        up[1] = p1
        up[2] = p2
        up[3] = p3
        up[4] = p4
        up[5] = p5
        up[6] = p6
        up[7] = p7
        ur[0] = r0
        ur[1] = r1
        ur[2] = r2
        ur[3] = r3
        ur[4] = r4
        ur[5] = r5
        ur[6] = r6
        ur[7] = r7
    else:
        for k in range(m):
            vp = xsp[k] + a * up[0]
            up[0] = vp
            vr = xsr[k] + a * ur[0]
            ur[0] = vr
            for i in range(1, n):
                vp = vp + a * up[i]
                up[i] = vp
                vr = vr + a * ur[i]
                ur[i] = vr
            bsp[k] = vp
            bsr[k] = vr


@njit(cache=True, fastmath={"contract"})
def _fir_block(buf, ys, q):  # pragma: no cover - compiled
    """``ys[k] = sum_m q[m] buf[k + n - 1 - m]`` (``n = q.size``), one fused pass for ``n <= 8``.

    ``buf`` holds ``n - 1`` past values of the last section followed by the block's values.
    """
    n = q.size
    m = ys.size
    if n == 1:
        q0 = q[0]
        for k in range(m):
            ys[k] = q0 * buf[k]
    elif n == 2:
        q0 = q[0]
        q1 = q[1]
        for k in range(m):
            ys[k] = q1 * buf[k] + q0 * buf[k + 1]
    elif n == 3:
        q0 = q[0]
        q1 = q[1]
        q2 = q[2]
        for k in range(m):
            ys[k] = q2 * buf[k] + q1 * buf[k + 1] + q0 * buf[k + 2]
    elif n == 4:
        q0 = q[0]
        q1 = q[1]
        q2 = q[2]
        q3 = q[3]
        for k in range(m):
            ys[k] = q3 * buf[k] + q2 * buf[k + 1] + q1 * buf[k + 2] + q0 * buf[k + 3]
    elif n == 5:
        q0 = q[0]
        q1 = q[1]
        q2 = q[2]
        q3 = q[3]
        q4 = q[4]
        for k in range(m):
            ys[k] = (
                q4 * buf[k] + q3 * buf[k + 1] + q2 * buf[k + 2] + q1 * buf[k + 3] + q0 * buf[k + 4]
            )
    elif n == 6:
        q0 = q[0]
        q1 = q[1]
        q2 = q[2]
        q3 = q[3]
        q4 = q[4]
        q5 = q[5]
        for k in range(m):
            ys[k] = (
                q5 * buf[k] + q4 * buf[k + 1] + q3 * buf[k + 2] + q2 * buf[k + 3] + q1 * buf[k + 4]
                + q0 * buf[k + 5]
            )
    elif n == 7:
        q0 = q[0]
        q1 = q[1]
        q2 = q[2]
        q3 = q[3]
        q4 = q[4]
        q5 = q[5]
        q6 = q[6]
        for k in range(m):
            ys[k] = (
                q6 * buf[k] + q5 * buf[k + 1] + q4 * buf[k + 2] + q3 * buf[k + 3] + q2 * buf[k + 4]
                + q1 * buf[k + 5] + q0 * buf[k + 6]
            )
    elif n == 8:
        q0 = q[0]
        q1 = q[1]
        q2 = q[2]
        q3 = q[3]
        q4 = q[4]
        q5 = q[5]
        q6 = q[6]
        q7 = q[7]
        for k in range(m):
            ys[k] = (
                q7 * buf[k] + q6 * buf[k + 1] + q5 * buf[k + 2] + q4 * buf[k + 3] + q3 * buf[k + 4]
                + q2 * buf[k + 5] + q1 * buf[k + 6] + q0 * buf[k + 7]
            )
    else:
        h = n - 1
        c = q[0]
        src = buf[h : h + m]
        for k in range(m):
            ys[k] = c * src[k]
        for j in range(1, n):
            src = buf[h - j : h - j + m]
            c = q[j]
            for k in range(m):
                ys[k] += c * src[k]


@njit(cache=True, fastmath={"contract"})
def tisc_run(x, y, s, a, q):  # pragma: no cover - compiled
    """Tanks-in-series chain in cascade form over a 1-D chunk (any ``n = q.size``).

    ``W(z) = Q(z^-1) / (1 - a z^-1)^n``: the input runs through ``n`` equal first-order sections
    ``u_i[k] = u_{i-1}[k] + a u_i[k-1]`` (one fused multiply-add of loop-carried latency per
    section) and the output is the ``n``-tap FIR ``y[k] = sum_m q[m] u_{n-1}[k-m]``, evaluated
    per block of :data:`_CASCADE_BLOCK` samples as a vectorised loop. ``s`` holds
    ``[u_0 .. u_{n-1}]`` at the last tick followed by ``u_{n-1}`` at ticks ``-2 .. -(n-1)``.
    """
    n = q.size
    nx = x.size
    if nx == 0:
        return
    h = n - 1
    buf = np.empty(_CASCADE_BLOCK + h)
    u = s[:n].copy()
    if h > 0:
        buf[h - 1] = u[n - 1]
        for d in range(1, h):
            buf[h - 1 - d] = s[n + d - 1]
    pos = 0
    while pos < nx:
        m_len = min(_CASCADE_BLOCK, nx - pos)
        xs = x[pos : pos + m_len]
        bs = buf[h : h + m_len]
        _sections1(xs, bs, u, a)
        _fir_block(buf[0 : m_len + h], y[pos : pos + m_len], q)
        for i in range(h):
            buf[i] = buf[m_len + i]
        pos += m_len
    s[:n] = u
    for d in range(1, h):
        s[n + d - 1] = buf[h - 1 - d]


@njit(cache=True, fastmath={"contract"})
def tisc_run5(x, y, s, a, q):  # pragma: no cover - compiled
    """:func:`tisc_run` for exactly 5 tanks: state in registers, FIR unrolled."""
    nx = x.size
    if nx == 0:
        return
    buf = np.empty(_CASCADE_BLOCK + 4)
    u0 = s[0]
    u1 = s[1]
    u2 = s[2]
    u3 = s[3]
    u4 = s[4]
    buf[0] = s[7]
    buf[1] = s[6]
    buf[2] = s[5]
    buf[3] = u4
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    q4 = q[4]
    pos = 0
    while pos < nx:
        m_len = min(_CASCADE_BLOCK, nx - pos)
        xs = x[pos : pos + m_len]
        bs = buf[4 : 4 + m_len]
        for k in range(m_len):
            u0 = xs[k] + a * u0
            u1 = u0 + a * u1
            u2 = u1 + a * u2
            u3 = u2 + a * u3
            u4 = u3 + a * u4
            bs[k] = u4
        ys = y[pos : pos + m_len]
        bb = buf[0 : m_len + 4]
        for k in range(m_len):
            ys[k] = q4 * bb[k] + q3 * bb[k + 1] + q2 * bb[k + 2] + q1 * bb[k + 3] + q0 * bb[k + 4]
        buf[0] = buf[m_len]
        buf[1] = buf[m_len + 1]
        buf[2] = buf[m_len + 2]
        buf[3] = buf[m_len + 3]
        pos += m_len
    s[0] = u0
    s[1] = u1
    s[2] = u2
    s[3] = u3
    s[4] = u4
    s[5] = buf[2]
    s[6] = buf[1]
    s[7] = buf[0]


@njit(cache=True, fastmath={"contract"})
def _tisc5_two_lanes(xa, ya, sa, xb, yb, sb, a, q):  # pragma: no cover - compiled
    """:func:`tisc_run5` on two independent series of equal length, interleaved per sample.

    The two chains of 5 loop-carried multiply-adds are independent, so the core overlaps them
    (about 0.75 instead of 1.25 ns per sample for the sections on the development machine).
    """
    nx = xa.size
    if nx == 0:
        return
    bufa = np.empty(_CASCADE_BLOCK + 4)
    bufb = np.empty(_CASCADE_BLOCK + 4)
    ua0 = sa[0]
    ua1 = sa[1]
    ua2 = sa[2]
    ua3 = sa[3]
    ua4 = sa[4]
    ub0 = sb[0]
    ub1 = sb[1]
    ub2 = sb[2]
    ub3 = sb[3]
    ub4 = sb[4]
    bufa[0] = sa[7]
    bufa[1] = sa[6]
    bufa[2] = sa[5]
    bufa[3] = ua4
    bufb[0] = sb[7]
    bufb[1] = sb[6]
    bufb[2] = sb[5]
    bufb[3] = ub4
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    q4 = q[4]
    pos = 0
    while pos < nx:
        m_len = min(_CASCADE_BLOCK, nx - pos)
        xsa = xa[pos : pos + m_len]
        xsb = xb[pos : pos + m_len]
        bsa = bufa[4 : 4 + m_len]
        bsb = bufb[4 : 4 + m_len]
        for k in range(m_len):
            ua0 = xsa[k] + a * ua0
            ub0 = xsb[k] + a * ub0
            ua1 = ua0 + a * ua1
            ub1 = ub0 + a * ub1
            ua2 = ua1 + a * ua2
            ub2 = ub1 + a * ub2
            ua3 = ua2 + a * ua3
            ub3 = ub2 + a * ub3
            ua4 = ua3 + a * ua4
            ub4 = ub3 + a * ub4
            bsa[k] = ua4
            bsb[k] = ub4
        ysa = ya[pos : pos + m_len]
        ysb = yb[pos : pos + m_len]
        ba = bufa[0 : m_len + 4]
        bb = bufb[0 : m_len + 4]
        for k in range(m_len):
            ysa[k] = q4 * ba[k] + q3 * ba[k + 1] + q2 * ba[k + 2] + q1 * ba[k + 3] + q0 * ba[k + 4]
        for k in range(m_len):
            ysb[k] = q4 * bb[k] + q3 * bb[k + 1] + q2 * bb[k + 2] + q1 * bb[k + 3] + q0 * bb[k + 4]
        for i in range(4):
            bufa[i] = bufa[m_len + i]
            bufb[i] = bufb[m_len + i]
        pos += m_len
    sa[0] = ua0
    sa[1] = ua1
    sa[2] = ua2
    sa[3] = ua3
    sa[4] = ua4
    sa[5] = bufa[2]
    sa[6] = bufa[1]
    sa[7] = bufa[0]
    sb[0] = ub0
    sb[1] = ub1
    sb[2] = ub2
    sb[3] = ub3
    sb[4] = ub4
    sb[5] = bufb[2]
    sb[6] = bufb[1]
    sb[7] = bufb[0]


@njit(cache=True, fastmath={"contract"})
def _tisc_two_lanes(xa, ya, sa, xb, yb, sb, a, q):  # pragma: no cover - compiled
    """:func:`tisc_run` (any ``n``) on two independent series of equal length, interleaved."""
    n = q.size
    nx = xa.size
    if nx == 0:
        return
    h = n - 1
    bufa = np.empty(_CASCADE_BLOCK + h)
    bufb = np.empty(_CASCADE_BLOCK + h)
    ua = sa[:n].copy()
    ub = sb[:n].copy()
    if h > 0:
        bufa[h - 1] = ua[n - 1]
        bufb[h - 1] = ub[n - 1]
        for d in range(1, h):
            bufa[h - 1 - d] = sa[n + d - 1]
            bufb[h - 1 - d] = sb[n + d - 1]
    pos = 0
    while pos < nx:
        m_len = min(_CASCADE_BLOCK, nx - pos)
        xsa = xa[pos : pos + m_len]
        xsb = xb[pos : pos + m_len]
        bsa = bufa[h : h + m_len]
        bsb = bufb[h : h + m_len]
        _sections2(xsa, bsa, ua, xsb, bsb, ub, a)
        _fir_block(bufa[0 : m_len + h], ya[pos : pos + m_len], q)
        _fir_block(bufb[0 : m_len + h], yb[pos : pos + m_len], q)
        for i in range(h):
            bufa[i] = bufa[m_len + i]
            bufb[i] = bufb[m_len + i]
        pos += m_len
    sa[:n] = ua
    sb[:n] = ub
    for d in range(1, h):
        sa[n + d - 1] = bufa[h - 1 - d]
        sb[n + d - 1] = bufb[h - 1 - d]


#: Free-response states below this magnitude are dropped (they are far below the round-off of
#: any signal above 1e-270; keeps the correction out of subnormal arithmetic).
_FREE_RESPONSE_FLOOR = 1e-290


@njit(cache=True, fastmath={"contract"})
def tisc_run_split(x, y, s, a, q, min_split):  # pragma: no cover - compiled
    """:func:`tisc_run` / :func:`tisc_run5` with the chunk split in two halves run as two lanes.

    By linearity the output of the second half is its zero-state response (lane B, run at the
    same time as the first half, lane A) plus the free response of the true state at the split,
    which decays like ``a^k k^(n-1)``: it is added over the samples where it is not below
    :data:`_FREE_RESPONSE_FLOOR`, and the final state is the sum of both lanes' states. Every term
    is non-negative for non-negative data. Chunks shorter than ``min_split`` (chosen by the
    caller from the decay rate) run in one lane.
    """
    five = q.size == 5
    n = x.size
    if n < min_split or n < 2:
        if five:
            tisc_run5(x, y, s, a, q)
        else:
            tisc_run(x, y, s, a, q)
        return
    h = n // 2
    sb = np.zeros(s.size)
    if five:
        _tisc5_two_lanes(x[:h], y[:h], s, x[h : 2 * h], y[h : 2 * h], sb, a, q)
    else:
        _tisc_two_lanes(x[:h], y[:h], s, x[h : 2 * h], y[h : 2 * h], sb, a, q)
    if n > 2 * h:
        if five:
            tisc_run5(x[2 * h :], y[2 * h :], sb, a, q)
        else:
            tisc_run(x[2 * h :], y[2 * h :], sb, a, q)
    # free response of the state at the split over the second half, until it has died out
    zeros = np.zeros(_CASCADE_BLOCK)
    tmp = np.empty(_CASCADE_BLOCK)
    pos = h
    while pos < n:
        m_len = min(_CASCADE_BLOCK, n - pos)
        if five:
            tisc_run5(zeros[:m_len], tmp[:m_len], s, a, q)
        else:
            tisc_run(zeros[:m_len], tmp[:m_len], s, a, q)
        ys = y[pos : pos + m_len]
        for k in range(m_len):
            ys[k] += tmp[k]
        pos += m_len
        big = 0.0
        for i in range(s.size):
            big = max(big, abs(s[i]))
        if big < _FREE_RESPONSE_FLOOR:
            s[:] = 0.0
            break
    for i in range(s.size):
        s[i] += sb[i]


@njit(cache=True, fastmath={"contract"})
def tisc_rows_serial(x, y, s, a, q, min_split):  # pragma: no cover - compiled
    """Row-wise :func:`tisc_run` over (batch, time) chunks; ``s`` is (batch, state size)."""
    for b in range(x.shape[0]):
        tisc_run_split(x[b], y[b], s[b], a, q, min_split)


@njit(cache=True, fastmath={"contract"}, parallel=True)
def tisc_rows_parallel(x, y, s, a, q, min_split):  # pragma: no cover - compiled
    """Row-wise :func:`tisc_run` with ``prange`` over the batch rows."""
    for b in prange(x.shape[0]):
        tisc_run_split(x[b], y[b], s[b], a, q, min_split)
