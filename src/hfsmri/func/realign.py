"""Fast rigid realignment of BOLD volumes (least squares, inverse-compositional Gauss-Newton).

Same-run volumes differ by a rigid head motion and noise, so the SPM ``spm_realign`` model applies:
minimise the sum of squared intensity differences between a reference volume F and each volume G
resampled through a rigid map. We use the inverse-compositional form (Baker & Matthews 2004):
the Jacobian comes from the gradient of the (smoothed) reference, so ``H^-1 J^T`` is computed once
and every iteration costs one trilinear resampling of a few thousand sample points.

Conventions
-----------
* World coordinates are the NIfTI RAS+ mm of the BOLD image's affine.
* For volume k we estimate ``M_k`` (4x4, world mm) with ``G_k(M_k x) ~ F(x)``: ``M_k`` maps a
  reference-space point to where that tissue sits in volume k.
* ``M_k`` is a rotation about the volume centre ``c`` followed by a translation:
  ``M x = R (x - c) + c + t``. Reported parameters ``[tx, ty, tz, rx, ry, rz]``: ``t`` in mm and
  the X-Y-Z Euler angles of ``R = Rz Ry Rx`` in radians (fMRIPrep/SPM units).
* Two passes as SPM: register to the first volume's neighbourhood mean (the mean of the raw
  series), then to the mean of the realigned series. Images are smoothed (default 5 mm FWHM,
  as SPM) for estimation only.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from hfsmri.errors import InputDataError

__all__ = ["realign", "rigid_matrix", "rigid_params", "resample_volume"]


def _rot(rx, ry, rz):
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rxm = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rym = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rzm = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rzm @ rym @ rxm


def rigid_matrix(params, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 world matrix ``x -> R (x - c) + c + t`` from ``[tx, ty, tz, rx, ry, rz]`` (mm, rad)."""
    p = np.asarray(params, dtype=float)
    c = np.asarray(centre, dtype=float)
    r = _rot(*p[3:6])
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c + p[:3] - r @ c
    return m


def rigid_params(matrix, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Inverse of :func:`rigid_matrix` (rotation made orthonormal by polar decomposition)."""
    m = np.asarray(matrix, dtype=float)
    u, _, vt = np.linalg.svd(m[:3, :3])
    r = u @ vt
    c = np.asarray(centre, dtype=float)
    t = m[:3, 3] - c + r @ c
    ry = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    rx = np.arctan2(r[2, 1], r[2, 2])
    rz = np.arctan2(r[1, 0], r[0, 0])
    return np.array([t[0], t[1], t[2], rx, ry, rz])


def resample_volume(vol, affine, matrix, out_affine=None, out_shape=None, order=1):
    """Sample ``vol`` at ``matrix @ x`` for every voxel centre x of the output grid (default: same grid).

    Linear (``order=1``) or spline interpolation, 0 outside the field of view.
    """
    out_affine = np.asarray(affine if out_affine is None else out_affine, dtype=float)
    out_shape = vol.shape if out_shape is None else tuple(out_shape)
    vox = np.linalg.inv(affine) @ np.asarray(matrix, dtype=float) @ out_affine  # out voxel -> in voxel
    return ndimage.affine_transform(vol, vox[:3, :3], offset=vox[:3, 3], output_shape=out_shape,
                                    order=order, mode="constant", cval=0.0)


def _smooth(vol, fwhm_mm, voxel_sizes):
    sigma = fwhm_mm / np.sqrt(8 * np.log(2)) / np.asarray(voxel_sizes, dtype=float)
    return ndimage.gaussian_filter(vol, sigma, mode="nearest")


def _estimate(ref_s, vols_s, affine, centre, n_points, max_iter, tol, rng):
    """Inverse-compositional GN of every volume against the smoothed reference ``ref_s``."""
    shape = ref_s.shape
    thr = np.percentile(ref_s, 60)
    cand = np.flatnonzero((ref_s > thr).ravel())
    # keep a margin so that moved points stay inside the field of view
    ijk_all = np.array(np.unravel_index(cand, shape))
    inside = np.all((ijk_all >= 2) & (ijk_all <= np.array(shape)[:, None] - 3), axis=0)
    cand = cand[inside]
    if cand.size < 50:
        raise InputDataError("too few voxels with signal to estimate head motion")
    pick = np.sort(rng.choice(cand, size=min(n_points, cand.size), replace=False))
    ijk = np.array(np.unravel_index(pick, shape), dtype=float)
    x = (affine[:3, :3] @ ijk + affine[:3, 3:4]).T  # (N, 3) world
    f = ref_s.ravel()[pick]
    gv = np.stack(np.gradient(ref_s), axis=0).reshape(3, -1)[:, pick]  # d/d voxel index
    gw = np.linalg.inv(affine[:3, :3]).T @ gv  # world gradient (3, N)
    d = x - centre
    # dW/dp at p = 0: translations -> identity; small rotations about x, y, z -> e_axis x d
    dw = np.zeros((x.shape[0], 3, 6))
    dw[:, :, 0:3] = np.eye(3)
    dw[:, :, 3] = np.stack([np.zeros(len(d)), -d[:, 2], d[:, 1]], axis=1)
    dw[:, :, 4] = np.stack([d[:, 2], np.zeros(len(d)), -d[:, 0]], axis=1)
    dw[:, :, 5] = np.stack([-d[:, 1], d[:, 0], np.zeros(len(d))], axis=1)
    jac = np.einsum("ni,nij->nj", gw.T, dw)  # (N, 6)
    h = jac.T @ jac
    h_inv_jt = np.linalg.solve(h + 1e-9 * np.trace(h) * np.eye(6), jac.T)
    xh = np.vstack([x.T, np.ones(len(x))])
    inv_aff = np.linalg.inv(affine)
    mats = []
    m = np.eye(4)
    for g in vols_s:
        for _ in range(max_iter):
            vox = (inv_aff @ (m @ xh))[:3]
            gval = ndimage.map_coordinates(g, vox, order=1, mode="nearest")
            dp = h_inv_jt @ (gval - f)
            m = m @ np.linalg.inv(rigid_matrix(dp, centre))
            if np.max(np.abs(dp[:3])) < tol and np.max(np.abs(dp[3:])) < tol / 50.0:
                break
        mats.append(m.copy())  # warm start of the next volume from this one
    return mats


def realign(data4d, affine, fwhm_mm: float = 5.0, n_points: int = 10000, max_iter: int = 30,
            tol: float = 1e-4, two_pass: bool = True, random_state: int = 0):
    """Rigid realignment of a 4D series (see module doc).

    Parameters
    ----------
    data4d : array (X, Y, Z, T)
    affine : (4, 4) NIfTI affine (voxel -> RAS mm)
    fwhm_mm : smoothing for estimation (mm FWHM)
    n_points : sample voxels used (drawn among the brightest 40 %, fixed by ``random_state``)
    max_iter, tol : Gauss-Newton stopping (tol in mm; rotations tol/50 rad)
    two_pass : second pass against the mean of the realigned series (SPM "register to mean")

    Returns
    -------
    dict: ``matrices`` list of T 4x4 world matrices ``M_k`` (reference point -> volume-k point),
    ``params`` (T, 6) [tx, ty, tz (mm), rx, ry, rz (rad)], ``centre`` (3,), ``mean`` realigned mean (3D).
    """
    data = np.asarray(data4d, dtype=np.float64)
    if data.ndim != 4:
        raise InputDataError(f"realignment needs 4D data, got shape {data.shape}")
    affine = np.asarray(affine, dtype=float)
    vs = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    centre = (affine[:3, :3] @ ((np.array(data.shape[:3]) - 1) / 2.0)) + affine[:3, 3]
    vols_s = [_smooth(data[..., k], fwhm_mm, vs) for k in range(data.shape[3])]
    rng = np.random.default_rng(random_state)
    ref = _smooth(data.mean(axis=3), fwhm_mm, vs)
    mats = _estimate(ref, vols_s, affine, centre, n_points, max_iter, tol, rng)
    mean = np.mean([resample_volume(data[..., k], affine, mats[k]) for k in range(data.shape[3])], axis=0)
    if two_pass:
        rng = np.random.default_rng(random_state)
        mats = _estimate(_smooth(mean, fwhm_mm, vs), vols_s, affine, centre, n_points, max_iter, tol, rng)
        mean = np.mean([resample_volume(data[..., k], affine, mats[k]) for k in range(data.shape[3])], axis=0)
    # express relative to the first volume, as SPM/MCFLIRT report motion (volume 0 = identity)
    m0_inv = np.linalg.inv(mats[0])
    rel = [m @ m0_inv for m in mats]
    params = np.array([rigid_params(m, centre) for m in rel])
    return {"matrices": mats, "params": params, "centre": centre, "mean": mean}
