"""Diffusion tensor fitting (OLS, WLS, iterative WLS), batched over voxels in numpy.

Model (Basser et al. 1994): ``ln S_i = ln S0 - b_i g_iᵀ D g_i``. With the design matrix
``X_i = [-b gx², -2b gx gy, -b gy², -2b gx gz, -2b gy gz, -b gz², 1]`` the unknowns are
``β = (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz, ln S0)`` (dipy's lower-triangular order).

Fit methods (all linear in ln S, solved for every voxel at once):

* ``"ols"``  — β = (XᵀX)⁻¹ Xᵀ ln S.
* ``"wls"``  — two-pass weighted least squares of Chung et al. 2006 / Salvador et al. 2005, as
  dipy's default: weights w_i = Ŝ_i² with Ŝ the OLS-predicted signal.
* ``"iwls"`` — iteratively re-weighted linear least squares (Veraart et al. 2013): repeat the WLS
  step with weights Ŝ_i² from the previous estimate, ``n_iter`` times (``n_iter=1`` is ``"wls"``).

Implementation: the columns of X are scaled to unit norm first (so the weighted normal equations
(XᵀWX) β = XᵀW ln S stay well conditioned, cond ≈ 1e2 rather than 1e8). Default engine "numba":
one compiled loop over voxels (parallel) accumulates XᵀWX and solves it by a 7×7 Cholesky, then a
cyclic Jacobi 3×3 eigen-decomposition. Engine "numpy": the normal matrices of all voxels come from
one matrix product (W @ vec(X_i X_iᵀ)), are solved in one batched LAPACK call, and the
eigen-decomposition is one batched ``numpy.linalg.eigh``.

Conventions shared with dipy (so that results agree to ~1e-10):

* signals are clipped below at ``min_signal`` (default 1e-4) before the log;
* eigenvalues are sorted descending and clipped below at
  ``min_diffusivity = 1e-6 / max(B)`` where ``B`` is dipy's (positive) B-matrix incl. the factor
  2 on the off-diagonal terms — this is how dipy handles negative eigenvalues;
* FA is 0 where all eigenvalues are 0 (voxels outside the mask have all-zero parameters);
* eigenvectors are the columns of ``evecs[..., :, j]`` for eigenvalue ``j``.

Units: diffusivities in mm²/s when b is in s/mm² (typical white matter MD ≈ 0.7e-3 mm²/s).
"""
from __future__ import annotations

import numpy as np

from hfsmri.dwi.gradients import B0_THRESHOLD, DEFAULT_MAX_B, GradientTable, gradient_table

MIN_SIGNAL = 1e-4
_TOL = 1e-6
FIT_METHODS = ("ols", "wls", "iwls")


def design_matrix(bvals: np.ndarray, bvecs: np.ndarray) -> np.ndarray:
    """(N, 7) design matrix ``[-b gx², -2b gx gy, -b gy², -2b gx gz, -2b gy gz, -b gz², 1]``."""
    b = np.asarray(bvals, float)
    g = np.asarray(bvecs, float)
    x, y, z = g[:, 0], g[:, 1], g[:, 2]
    return np.column_stack([-b * x * x, -2 * b * x * y, -b * y * y, -2 * b * x * z, -2 * b * y * z,
                            -b * z * z, np.ones_like(b)])


def from_lower_triangular(d6: np.ndarray) -> np.ndarray:
    """(..., 6) ``(Dxx, Dxy, Dyy, Dxz, Dyz, Dzz)`` → (..., 3, 3) symmetric tensors."""
    d6 = np.asarray(d6)
    out = np.empty(d6.shape[:-1] + (3, 3), dtype=d6.dtype)
    idx = {(0, 0): 0, (0, 1): 1, (1, 1): 2, (0, 2): 3, (1, 2): 4, (2, 2): 5}
    for (i, j), k in idx.items():
        out[..., i, j] = d6[..., k]
        out[..., j, i] = d6[..., k]
    return out


def decompose(tensors: np.ndarray, min_diffusivity: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Batched eigen-decomposition of symmetric (..., 3, 3) tensors.

    Returns ``(evals (..., 3) descending and clipped at min_diffusivity, evecs (..., 3, 3))`` with
    eigenvectors as columns.
    """
    w, v = np.linalg.eigh(tensors)
    w = w[..., ::-1]
    v = v[..., :, ::-1]
    return np.clip(w, min_diffusivity, None), v


def fractional_anisotropy(evals: np.ndarray) -> np.ndarray:
    """FA = sqrt(½ Σ(λi−λj)² / Σλi²); 0 where all eigenvalues are 0."""
    l1, l2, l3 = np.moveaxis(np.asarray(evals, float), -1, 0)
    all_zero = (l1 == 0) & (l2 == 0) & (l3 == 0)
    num = 0.5 * ((l1 - l2) ** 2 + (l2 - l3) ** 2 + (l3 - l1) ** 2)
    return np.sqrt(num / (l1 * l1 + l2 * l2 + l3 * l3 + all_zero))


def tensor_mode(evals: np.ndarray) -> np.ndarray:
    """Tensor mode (Ennis & Kindlmann 2006) from eigenvalues: 3√6·det(Ã/‖Ã‖), Ã the deviatoric part;
    −1 planar … +1 linear; 0 for isotropic tensors."""
    ev = np.asarray(evals, float)
    dev = ev - ev.mean(axis=-1, keepdims=True)
    nrm = np.sqrt((dev ** 2).sum(axis=-1))
    safe = np.where(nrm > 0, nrm, 1.0)
    m = 3 * np.sqrt(6) * np.prod(dev / safe[..., None], axis=-1)
    return np.where(nrm > 0, np.clip(m, -1.0, 1.0), 0.0)


class TensorFit:
    """Result of :meth:`TensorModel.fit`. Maps have the spatial shape of the input data.

    Attributes
    ----------
    evals : (..., 3) eigenvalues λ1 ≥ λ2 ≥ λ3, mm²/s
    evecs : (..., 3, 3) eigenvectors as columns
    lower_triangular : (..., 6) tensor elements (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz)
    S0 : (...) fitted non-weighted signal
    mask : (...) bool, voxels that were fitted
    """

    def __init__(self, model: "TensorModel", evals, evecs, lower_triangular, s0, mask):
        self.model = model
        self.evals = evals
        self.evecs = evecs
        self.lower_triangular = lower_triangular
        self.S0 = s0
        self.mask = mask

    @property
    def fa(self) -> np.ndarray:
        return fractional_anisotropy(self.evals)

    @property
    def md(self) -> np.ndarray:
        """Mean diffusivity (λ1+λ2+λ3)/3."""
        return self.evals.mean(axis=-1)

    @property
    def ad(self) -> np.ndarray:
        """Axial diffusivity λ1."""
        return self.evals[..., 0].copy()

    @property
    def rd(self) -> np.ndarray:
        """Radial diffusivity (λ2+λ3)/2."""
        return 0.5 * (self.evals[..., 1] + self.evals[..., 2])

    @property
    def v1(self) -> np.ndarray:
        """Principal eigenvector (..., 3)."""
        return self.evecs[..., :, 0].copy()

    @property
    def color_fa(self) -> np.ndarray:
        """|V1| · clip(FA, 0, 1), (..., 3) RGB = (x, y, z)."""
        return np.abs(self.v1) * np.clip(self.fa, 0, 1)[..., None]

    @property
    def mode(self) -> np.ndarray:
        return tensor_mode(self.evals)

    @property
    def quadratic_form(self) -> np.ndarray:
        return from_lower_triangular(self.lower_triangular)

    def predict(self, bvals=None, bvecs=None) -> np.ndarray:
        """Predicted signal (..., N) for a gradient table (default: the model's fitted volumes)."""
        x = self.model.design if bvals is None else design_matrix(bvals, bvecs)
        beta = np.concatenate([self.lower_triangular, np.log(np.where(self.S0 > 0, self.S0, 1.0))[..., None]], -1)
        return np.exp(beta @ x.T) * (self.S0 > 0)[..., None]

    def maps(self) -> dict[str, np.ndarray]:
        """The four scalar maps of the review: {"fa", "md", "ad", "rd"}."""
        return {"fa": self.fa, "md": self.md, "ad": self.ad, "rd": self.rd}


class TensorModel:
    """Diffusion tensor model.

    Parameters
    ----------
    bvals : (N,) array (s/mm²) or :class:`~hfsmri.dwi.gradients.GradientTable`
    bvecs : (N, 3) or (3, N) array (ignored when ``bvals`` is a GradientTable); NaN rows allowed
        for b0 volumes.
    fit : {"ols", "wls", "iwls"}
    max_bval : float or None
        Only volumes with b ≤ max_bval (default 1500 s/mm²) enter the fit (b0 volumes written with
        a small b and a direction enter with both, as dipy and FSL dtifit); when no
        diffusion-weighted volume is that low, the lowest shell is used
        (:meth:`~hfsmri.dwi.gradients.GradientTable.tensor_volumes`). The indices are in
        :attr:`volumes`, the rule in words in :attr:`volume_rule`. None uses all volumes.
    b0_threshold : float
    min_signal : float, signals are clipped below at this value before the log.
    n_iter : int, iterations of ``"iwls"`` (each one a WLS step; ignored otherwise).
    step : int, voxels per batch (memory ≈ step × N × 8 bytes × a few).
    engine : {"numba", "numpy"}
        "numba" (default) fits each voxel in a compiled parallel loop (Cholesky 7×7 solves, Jacobi
        3×3 eigen-decomposition); "numpy" does the same algebra with batched numpy/LAPACK calls.
        Both give the same numbers to ~1e-12.

    Examples
    --------
    >>> fit = TensorModel(bvals, bvecs, fit="wls").fit(data4d, mask)   # doctest: +SKIP
    >>> fit.fa, fit.md, fit.ad, fit.rd, fit.evecs                       # doctest: +SKIP
    """

    def __init__(self, bvals, bvecs=None, fit: str = "wls", *, max_bval: float | None = DEFAULT_MAX_B,
                 b0_threshold: float = B0_THRESHOLD, min_signal: float = MIN_SIGNAL, n_iter: int = 5,
                 step: int = 50000, engine: str = "numba"):
        if isinstance(bvals, GradientTable):
            gtab = bvals
        else:
            gtab = gradient_table(bvals, bvecs, b0_threshold=b0_threshold)
        method = str(fit).lower()
        if method not in FIT_METHODS:
            raise ValueError(f"fit must be one of {FIT_METHODS}, got {fit!r}")
        if min_signal <= 0:
            raise ValueError("min_signal must be > 0")
        self.gtab = gtab
        self.fit_method = method
        self.max_bval = max_bval
        self.volumes, self.volume_rule = gtab.tensor_volumes(max_bval)
        if self.volumes.size < 7 or (~gtab.b0s_mask[self.volumes]).sum() < 6:
            raise ValueError(f"the tensor needs at least 6 diffusion-weighted volumes and 7 in all "
                             f"({self.volume_rule}); got {self.volumes.size}")
        self.min_signal = float(min_signal)
        self.n_iter = 1 if method == "wls" else int(n_iter)
        self.step = int(step)
        if engine not in ("numba", "numpy"):
            raise ValueError(f"engine must be 'numba' or 'numpy', got {engine!r}")
        self.engine = engine
        sub = gtab.subset(self.volumes)
        self.design = design_matrix(sub.bvals, sub.bvecs)
        if np.linalg.matrix_rank(self.design) < 7:
            raise ValueError("the gradient directions do not determine a tensor (design matrix rank < 7)")
        bpos = -self.design.copy()
        bpos[:, 6] = 1.0  # dipy: min_diffusivity = tol / -design_matrix.min(), its last column is -1
        self.min_diffusivity = _TOL / bpos.max()
        self._scale = np.linalg.norm(self.design, axis=0)
        self._xs = self.design / self._scale
        self._pinv = np.linalg.pinv(self._xs)
        self._outer = np.einsum("gi,gj->gij", self._xs, self._xs).reshape(len(self._xs), 49)

    def _solve_block(self, log_s: np.ndarray) -> np.ndarray:
        if self.engine == "numba":
            from hfsmri.dwi._tensor_kernels import wls_fit

            n_iter = 0 if self.fit_method == "ols" else self.n_iter
            beta, ok = wls_fit(np.ascontiguousarray(log_s), self._xs, self._pinv, n_iter)
            if not ok.all():  # not positive definite: numpy pseudo-inverse path for those voxels
                bad = ~ok
                beta[bad] = self._solve_numpy(log_s[bad])
            return beta
        return self._solve_numpy(log_s)

    def _solve_numpy(self, log_s: np.ndarray) -> np.ndarray:
        beta = log_s @ self._pinv.T  # OLS, scaled coordinates
        if self.fit_method == "ols":
            return beta
        n, p = log_s.shape[0], 7
        for _ in range(self.n_iter):
            w = np.exp(2.0 * (beta @ self._xs.T))  # Ŝ² of the previous estimate
            xtwx = (w @ self._outer).reshape(n, p, p)
            xtwy = (w * log_s) @ self._xs
            try:
                beta = np.linalg.solve(xtwx, xtwy[..., None])[..., 0]
            except np.linalg.LinAlgError:  # a singular voxel: fall back to the pseudo-inverse
                beta = np.einsum("nij,nj->ni", np.linalg.pinv(xtwx), xtwy)
        return beta

    def fit(self, data: np.ndarray, mask: np.ndarray | None = None) -> TensorFit:
        """Fit every voxel (or those in ``mask``) of ``data`` (..., N_volumes_total).

        ``data`` holds all volumes of the gradient table; only :attr:`volumes` are used.
        """
        data = np.asarray(data)
        if data.shape[-1] != self.gtab.n_volumes:
            raise ValueError(f"data has {data.shape[-1]} volumes, the gradient table {self.gtab.n_volumes}")
        spatial = data.shape[:-1]
        if mask is None:
            mask = np.ones(spatial, dtype=bool)
        else:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != spatial:
                raise ValueError(f"mask shape {mask.shape} does not match data shape {spatial}")
        idx = np.flatnonzero(mask.ravel())
        flat = data.reshape(-1, data.shape[-1])
        n = idx.size
        lt = np.zeros((n, 6))
        lns0 = np.zeros(n)
        for start in range(0, n, self.step):
            sel = idx[start:start + self.step]
            block = np.asarray(flat[sel], dtype=float)
            if self.volumes.size != block.shape[1]:
                block = block[:, self.volumes]
            log_s = np.log(np.maximum(block, self.min_signal))
            beta = self._solve_block(log_s) / self._scale
            lt[start:start + sel.size] = beta[:, :6]
            lns0[start:start + sel.size] = beta[:, 6]
        if self.engine == "numba":
            from hfsmri.dwi._tensor_kernels import eig_sym3

            evals_m, evecs_m = eig_sym3(lt, self.min_diffusivity)
        else:
            evals_m, evecs_m = decompose(from_lower_triangular(lt), self.min_diffusivity)
        evals = np.zeros(spatial + (3,))
        evecs = np.zeros(spatial + (3, 3))
        lower = np.zeros(spatial + (6,))
        s0 = np.zeros(spatial)
        evals[mask] = evals_m
        evecs[mask] = evecs_m
        lower[mask] = lt
        s0[mask] = np.exp(lns0)
        return TensorFit(self, evals, evecs, lower, s0, mask)
