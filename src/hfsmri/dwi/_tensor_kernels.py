"""Numba kernels for the tensor fit: per-voxel (iterative) weighted least squares on the
log-signal with a 7×7 Cholesky solve, and a cyclic Jacobi eigen-decomposition of 3×3 symmetric
matrices. Loops run in parallel over voxels (``numba.prange``). Pure functions, no I/O.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, fastmath=False)
def wls_fit(log_s, xs, pinv, n_iter):  # pragma: no cover - compiled
    """Weighted least squares for every row of ``log_s`` (n, g).

    ``xs`` (g, 7) is the column-scaled design, ``pinv`` (7, g) its pseudo-inverse. Starts from the
    OLS estimate, then ``n_iter`` WLS steps with weights exp(2·xs·β) (the squared predicted signal).
    ``n_iter = 0`` returns OLS. Returns (beta (n, 7) in scaled coordinates, ok (n,) bool — False where
    the weighted normal matrix was not positive definite; beta then holds the OLS solution).
    """
    n, g = log_s.shape
    p = xs.shape[1]
    beta_out = np.empty((n, p))
    ok = np.ones(n, dtype=np.bool_)
    for v in prange(n):
        y = log_s[v]
        beta = np.zeros(p)
        for a in range(p):
            acc = 0.0
            for i in range(g):
                acc += pinv[a, i] * y[i]
            beta[a] = acc
        ols = beta.copy()
        A = np.empty((p, p))
        r = np.empty(p)
        L = np.empty((p, p))
        z = np.empty(p)
        for _ in range(n_iter):
            A[:, :] = 0.0
            r[:] = 0.0
            for i in range(g):
                pred = 0.0
                for a in range(p):
                    pred += xs[i, a] * beta[a]
                w = np.exp(2.0 * pred)
                wy = w * y[i]
                for a in range(p):
                    wa = w * xs[i, a]
                    r[a] += xs[i, a] * wy
                    for b in range(a, p):
                        A[a, b] += wa * xs[i, b]
            # Cholesky A = L Lᵀ (upper triangle of A holds the data)
            good = True
            for j in range(p):
                s = A[j, j]
                for k in range(j):
                    s -= L[j, k] * L[j, k]
                if not (s > 0.0):
                    good = False
                    break
                L[j, j] = np.sqrt(s)
                for i2 in range(j + 1, p):
                    s2 = A[j, i2]
                    for k in range(j):
                        s2 -= L[i2, k] * L[j, k]
                    L[i2, j] = s2 / L[j, j]
            if not good:
                ok[v] = False
                beta[:] = ols
                break
            for i2 in range(p):  # forward: L z = r
                s = r[i2]
                for k in range(i2):
                    s -= L[i2, k] * z[k]
                z[i2] = s / L[i2, i2]
            for i2 in range(p - 1, -1, -1):  # backward: Lᵀ beta = z
                s = z[i2]
                for k in range(i2 + 1, p):
                    s -= L[k, i2] * beta[k]
                beta[i2] = s / L[i2, i2]
        beta_out[v] = beta
    return beta_out, ok


@njit(cache=True, parallel=True)
def eig_sym3(lt, min_diffusivity):  # pragma: no cover - compiled
    """Eigen-decomposition of symmetric 3×3 tensors given as (n, 6) lower-triangular elements
    (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz) by cyclic Jacobi rotations (converges to machine precision).

    Returns evals (n, 3) sorted descending and clipped at ``min_diffusivity``, evecs (n, 3, 3) with
    eigenvectors as columns.
    """
    n = lt.shape[0]
    evals = np.empty((n, 3))
    evecs = np.empty((n, 3, 3))
    for v in prange(n):
        a = np.empty((3, 3))
        a[0, 0] = lt[v, 0]
        a[0, 1] = lt[v, 1]
        a[1, 0] = lt[v, 1]
        a[1, 1] = lt[v, 2]
        a[0, 2] = lt[v, 3]
        a[2, 0] = lt[v, 3]
        a[1, 2] = lt[v, 4]
        a[2, 1] = lt[v, 4]
        a[2, 2] = lt[v, 5]
        q = np.eye(3)
        scale = 0.0
        for i in range(3):
            for j in range(3):
                scale += a[i, j] * a[i, j]
        for _sweep in range(50):
            off = a[0, 1] * a[0, 1] + a[0, 2] * a[0, 2] + a[1, 2] * a[1, 2]
            if off <= 1e-32 * scale or off == 0.0:
                break
            for pp in range(2):
                for qq in range(pp + 1, 3):
                    apq = a[pp, qq]
                    if apq == 0.0:
                        continue
                    theta = (a[qq, qq] - a[pp, pp]) / (2.0 * apq)
                    t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
                    if theta < 0:
                        t = -t
                    c = 1.0 / np.sqrt(t * t + 1.0)
                    s = t * c
                    for k in range(3):  # A <- A J (columns p, q)
                        akp = a[k, pp]
                        akq = a[k, qq]
                        a[k, pp] = c * akp - s * akq
                        a[k, qq] = s * akp + c * akq
                    for k in range(3):  # A <- Jᵀ A (rows p, q)
                        apk = a[pp, k]
                        aqk = a[qq, k]
                        a[pp, k] = c * apk - s * aqk
                        a[qq, k] = s * apk + c * aqk
                    for k in range(3):
                        qkp = q[k, pp]
                        qkq = q[k, qq]
                        q[k, pp] = c * qkp - s * qkq
                        q[k, qq] = s * qkp + c * qkq
        d0, d1, d2 = a[0, 0], a[1, 1], a[2, 2]
        # sort descending (stable for ties: keep original order)
        o0, o1, o2 = 0, 1, 2
        d = (d0, d1, d2)
        if d[o1] > d[o0]:
            o0, o1 = o1, o0
        if d[o2] > d[o1]:
            o1, o2 = o2, o1
            if d[o1] > d[o0]:
                o0, o1 = o1, o0
        order = (o0, o1, o2)
        for j in range(3):
            val = d[order[j]]
            evals[v, j] = val if val > min_diffusivity else min_diffusivity
            for k in range(3):
                evecs[v, k, j] = q[k, order[j]]
    return evals, evecs
