"""Mass-univariate GLM and permutation inference (Freedman–Lane, sign flipping, TFCE, clusters).

Two entry points:

* :func:`ols` — vectorised OLS over all voxels at once (pseudo-inverse of the design computed once,
  voxels processed in chunks), t or F for a contrast, degrees of freedom, standardised effect
  (contrast / residual SD: Cohen's d for a two-group contrast) and partial correlation.
* :func:`permuted_glm` — permutation inference for one t contrast, both tails, with family-wise
  error control by the maximum statistic (voxel t, TFCE, cluster extent, cluster mass) and
  Benjamini–Hochberg FDR on the uncorrected permutation p-values.

Permutation scheme (Winkler et al. 2014): the design is re-parameterised for the contrast ``c``
into the effect of interest ``X·D·c·(c'Dc)^-1`` (D = (X'X)^+) and nuisance ``Z = X·null(c')``
(Smith/Beckmann partitioning; the model space is unchanged, so the observed t is the plain GLM t).
The residuals ``E = R_Z·Y`` of the reduced model are permuted (or sign-flipped), and the full model
is refitted: Freedman–Lane. Since only ``c'b*`` and the residual sum of squares of ``P·E`` are
needed, a whole batch of permutations costs one matrix product ``[Q[P_1^-1]; ...; Q[P_B^-1]]' · E``
with Q an orthonormal basis of X: ``c'b* = a'·Q'PE`` and ``RSS* = |E|² - |Q'PE|²``.
Sign flipping is chosen automatically when the tested effect contains the intercept (one-sample or
paired-difference designs), permutation otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange
from scipy import stats as sps

from ..errors import DesignError, InputDataError
from . import tfce as _tf
from .fdr import fdr_bh
from .permutation import PermutationSet, make_permutation_set, perm_key

_TOL = 1e-9  # relative tolerance for ">=" against the observed statistic (ties across equal permutations)


# ----------------------------------------------------------------------------- design helpers
def _as_design(design, contrast):
    """(X, c, columns, contrast_name, design_obj) from a Design or an array."""
    name = None
    obj = None
    if hasattr(design, "X") and hasattr(design, "contrasts"):
        obj = design
        X = np.asarray(design.X, dtype=float)
        columns = list(design.columns)
        if isinstance(contrast, str):
            if contrast not in design.contrasts:
                raise DesignError(f"unknown contrast {contrast!r}; the design has {sorted(design.contrasts)}",
                                  field="contrast")
            name = contrast
            contrast = design.contrasts[contrast]
    else:
        X = np.asarray(design, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        columns = [f"x{i}" for i in range(X.shape[1])]
        if isinstance(contrast, str):
            raise DesignError("a contrast name needs a Design object (with .contrasts)", field="contrast")
    c = np.asarray(contrast, dtype=float)
    if c.ndim == 1 and c.shape[0] != X.shape[1]:
        raise DesignError(f"contrast has {c.shape[0]} entries but the design has {X.shape[1]} columns "
                          f"({columns})", field="contrast")
    if c.ndim == 2 and c.shape[1] != X.shape[1]:
        raise DesignError(f"contrast matrix has {c.shape[1]} columns but the design has {X.shape[1]}",
                          field="contrast")
    if not np.all(np.isfinite(X)):
        bad = [columns[j] for j in range(X.shape[1]) if not np.all(np.isfinite(X[:, j]))]
        raise DesignError(f"design has missing/non-finite values in column(s) {bad}", field="design")
    return X, c, columns, name, obj


def check_rank(X: np.ndarray, columns=None) -> int:
    """Raise :class:`DesignError` naming the first column that is a linear combination of the
    previous ones (or all zero); return the rank."""
    X = np.asarray(X, dtype=float)
    columns = columns or [f"x{i}" for i in range(X.shape[1])]
    scale = np.linalg.norm(X, axis=0)
    for j in range(X.shape[1]):
        if scale[j] == 0 or not np.isfinite(scale[j]):
            raise DesignError(f"design column {columns[j]!r} is all zero", field=columns[j])
        if j == 0:
            continue
        A = X[:, :j] / scale[:j]
        coef, *_ = np.linalg.lstsq(A, X[:, j] / scale[j], rcond=None)
        res = X[:, j] / scale[j] - A @ coef
        if np.linalg.norm(res) < 1e-8:
            raise DesignError(f"design is rank deficient: column {columns[j]!r} is a linear combination of "
                              f"{columns[:j]}", field=columns[j])
    if X.shape[0] <= X.shape[1]:
        raise DesignError(f"{X.shape[0]} subjects for {X.shape[1]} design columns: no residual degrees of freedom",
                          field="design")
    return X.shape[1]


def partition(X: np.ndarray, c: np.ndarray):
    """Smith/Beckmann partition of X for t contrast ``c``: (x_eff (n,), Z (n, k-1))."""
    D = np.linalg.pinv(X.T @ X)
    cdc = float(c @ D @ c)
    if cdc <= 0:
        raise DesignError("contrast is not estimable with this design", field="contrast")
    x_eff = X @ D @ c / cdc
    # null space of c' (k x k-1)
    _, s, vt = np.linalg.svd(c[None, :])
    N = vt[1:].T
    Z = X @ N
    return x_eff, Z


def _orth(A: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    if A.size == 0:
        return np.zeros((A.shape[0], 0))
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    keep = s > tol * max(1.0, s.max() if s.size else 0.0)
    return U[:, keep]


def choose_scheme(X: np.ndarray, c: np.ndarray) -> str:
    """"signflip" when the tested effect carries the intercept (the constant is in span(X) but not
    in the nuisance span), else "permute"."""
    ones = np.ones(X.shape[0])
    _, Z = partition(X, c)

    def in_span(A):
        if A.shape[1] == 0:
            return False
        coef, *_ = np.linalg.lstsq(A, ones, rcond=None)
        return np.linalg.norm(A @ coef - ones) < 1e-8 * np.sqrt(X.shape[0])

    return "signflip" if (in_span(X) and not in_span(Z)) else "permute"


# ----------------------------------------------------------------------------- OLS
@dataclass
class GLMResult:
    """Voxel-wise OLS fit and one contrast.

    beta (k, V); effect: ``c'b`` (V,) or ``C b`` (q, V); se: standard error of ``c'b`` (t only);
    t or F (V,); df residual degrees of freedom; df_num (1 for t, q for F); p: two-sided for t,
    upper tail for F (parametric); sigma: residual SD; cohens_d: ``c'b / sigma`` (t only; Cohen's
    d for a two-group contrast); partial_r: ``t / sqrt(t² + df)`` (t) or sqrt of partial eta² (F).
    """

    beta: np.ndarray
    effect: np.ndarray
    se: np.ndarray | None
    t: np.ndarray | None
    F: np.ndarray | None
    df: int
    df_num: int
    p: np.ndarray
    sigma: np.ndarray
    cohens_d: np.ndarray | None
    partial_r: np.ndarray


def ols(Y, X, contrast, chunk_size: int = 65536) -> GLMResult:
    """Ordinary least squares over voxels.

    Parameters
    ----------
    Y : array (n_subjects, n_voxels) (a 1D array is one voxel)
    X : design (n_subjects, k), full column rank
    contrast : (k,) vector (t test) or (q, k) matrix (F test)
    chunk_size : voxels per chunk (memory bound ~ n·chunk_size floats)
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    X, c, columns, _, _ = _as_design(X, contrast)
    if Y.shape[0] != X.shape[0]:
        raise DesignError(f"data have {Y.shape[0]} rows but the design has {X.shape[0]} subjects", field="design")
    check_rank(X, columns)
    n, k = X.shape
    df = n - k
    pinv = np.linalg.pinv(X)
    XtXi = pinv @ pinv.T
    V = Y.shape[1]
    beta = np.empty((k, V))
    rss = np.empty(V)
    for s in range(0, V, chunk_size):
        y = Y[:, s:s + chunk_size]
        b = pinv @ y
        r = y - X @ b
        beta[:, s:s + chunk_size] = b
        rss[s:s + chunk_size] = np.einsum("ij,ij->j", r, r)
    sigma2 = rss / df
    sigma = np.sqrt(sigma2)
    with np.errstate(divide="ignore", invalid="ignore"):
        if c.ndim == 1:
            effect = c @ beta
            se = np.sqrt(sigma2 * float(c @ XtXi @ c))
            t = np.where(se > 0, effect / se, 0.0)
            p = 2 * sps.t.sf(np.abs(t), df)
            d = np.where(sigma > 0, effect / sigma, 0.0)
            pr = t / np.sqrt(t ** 2 + df)
            return GLMResult(beta, effect, se, t, None, df, 1, p, sigma, d, pr)
        q = c.shape[0]
        if np.linalg.matrix_rank(c) < q:
            raise DesignError("F contrast rows are linearly dependent", field="contrast")
        effect = c @ beta
        M = np.linalg.inv(c @ XtXi @ c.T)
        num = np.einsum("iv,ij,jv->v", effect, M, effect) / q
        F = np.where(sigma2 > 0, num / sigma2, 0.0)
        p = sps.f.sf(F, q, df)
        pr = np.sqrt(F * q / (F * q + df))
        return GLMResult(beta, effect, None, None, F, df, q, p, sigma, None, pr)


# ----------------------------------------------------------------------------- permutation result
@dataclass
class TailResult:
    """One tail (``pos``: large positive t; ``neg``: large negative t, i.e. the contrast -c).

    All maps are (V,) arrays over the input columns (in-mask voxels). p-values include the
    identity permutation: ``#{null >= observed} / n_null``.
    """

    p_unc: np.ndarray                 # voxel t, uncorrected (permutation)
    p_fwe_t: np.ndarray               # voxel t, FWE (max t)
    p_fdr: np.ndarray                 # BH on p_unc
    null_max_t: np.ndarray            # (n_null,)
    tfce: np.ndarray | None = None    # TFCE of this tail's statistic (>= 0)
    p_unc_tfce: np.ndarray | None = None
    p_fwe_tfce: np.ndarray | None = None
    null_max_tfce: np.ndarray | None = None
    tfce_dh: float | None = None
    cluster_labels: np.ndarray | None = None   # 0 = not in a supra-threshold cluster
    cluster_sizes: np.ndarray | None = None    # voxels, index = label - 1
    cluster_masses: np.ndarray | None = None
    p_fwe_extent: np.ndarray | None = None     # per voxel (1 outside clusters)
    p_fwe_mass: np.ndarray | None = None
    null_max_size: np.ndarray | None = None
    null_max_mass: np.ndarray | None = None


@dataclass
class PermutedGLMResult:
    """Result of :func:`permuted_glm` (contract name ``result``).

    ``t`` observed t map; ``pos`` / ``neg`` the two one-sided tails (:class:`TailResult`);
    ``two_sided`` dict with ``p_unc``, ``p_fwe_t`` (max |t|) and, with TFCE, ``tfce`` (signed) and
    ``p_fwe_tfce`` (max over both tails; nilearn's two-sided definition).
    """

    t: np.ndarray
    effect: np.ndarray
    se: np.ndarray
    df: int
    cohens_d: np.ndarray
    partial_r: np.ndarray
    p_param: np.ndarray               # parametric two-sided p of t
    pos: TailResult
    neg: TailResult
    two_sided: dict
    contrast: np.ndarray
    contrast_name: str | None
    columns: list
    scheme: str
    n_perm: int                       # random permutations drawn (0 if exact)
    n_null: int                       # size of the null distribution (identity included)
    exact: bool
    cluster_forming_p: float | None
    cluster_threshold: float | None   # in t units (one-sided)
    settings: dict = field(default_factory=dict)

    def tail(self, which: str) -> TailResult:
        if which in ("pos", "+", "positive"):
            return self.pos
        if which in ("neg", "-", "negative"):
            return self.neg
        raise ValueError(f"tail must be 'pos' or 'neg', got {which!r}")

    # convenience aliases for the tested direction (positive tail)
    @property
    def p_unc(self):
        return self.pos.p_unc

    @property
    def p_fwe_t(self):
        return self.pos.p_fwe_t

    @property
    def p_fwe_tfce(self):
        return self.pos.p_fwe_tfce

    @property
    def p_fdr(self):
        return self.pos.p_fdr

    @property
    def tfce(self):
        return self.pos.tfce


def _p_from_null(obs: np.ndarray, null: np.ndarray) -> np.ndarray:
    """#{null >= obs (within tolerance)} / len(null)."""
    srt = np.sort(null)
    thr = obs - _TOL * np.maximum(1.0, np.abs(obs))
    idx = np.searchsorted(srt, thr, side="left")
    return (srt.size - idx) / srt.size


@njit(cache=True, parallel=True)
def _t_from_G(G, k, a, normE2, scale, out):
    """t (B, V) from G = stacked Q'PE (B*k, V): num = a'G_b, rss = |E|² - |G_b|²."""
    B = out.shape[0]
    V = out.shape[1]
    for v in prange(V):
        e2 = normE2[v]
        tiny = 1e-24 * e2
        for b in range(B):
            num = 0.0
            fit = 0.0
            for j in range(k):
                g = G[b * k + j, v]
                num += a[j] * g
                fit += g * g
            rss = e2 - fit
            if rss > tiny and e2 > 0:
                out[b, v] = num / np.sqrt(rss * scale)
            else:
                out[b, v] = 0.0


@njit(cache=True, parallel=True)
def _count(T, thr_pos, thr_neg, thr_abs, cnt_pos, cnt_neg, cnt_abs):
    """Per-voxel counts of T >= thr_pos, T <= thr_neg, |T| >= thr_abs over the batch."""
    B = T.shape[0]
    V = T.shape[1]
    for v in prange(V):
        cp = 0
        cn = 0
        ca = 0
        for b in range(B):
            x = T[b, v]
            if x >= thr_pos[v]:
                cp += 1
            if x <= thr_neg[v]:
                cn += 1
            if abs(x) >= thr_abs[v]:
                ca += 1
        cnt_pos[v] += cp
        cnt_neg[v] += cn
        cnt_abs[v] += ca


@njit(cache=True, parallel=True)
def _count_ge(T, thr, cnt):
    B = T.shape[0]
    V = T.shape[1]
    for v in prange(V):
        c = 0
        for b in range(B):
            if T[b, v] >= thr[v]:
                c += 1
        cnt[v] += c


def smooth_variance(var: np.ndarray, mask: np.ndarray, sigma_vox) -> np.ndarray:
    """Variance map(s) smoothed within ``mask`` as FSL randomise ``-v``: ``G*(var) / G*(mask)``
    (Gaussian ``G`` of standard deviation ``sigma_vox`` voxels per axis, zero outside the mask,
    truncated at 4 SD). ``var``: (V,) or (B, V) over the in-mask voxels (C order)."""
    from scipy import ndimage

    var = np.asarray(var, dtype=np.float64)
    flat = var.reshape(-1, var.shape[-1])
    norm = ndimage.gaussian_filter(mask.astype(np.float64), sigma_vox, mode="constant")[mask]
    out = np.empty_like(flat)
    vol = np.zeros(mask.shape)
    for b in range(flat.shape[0]):
        vol[mask] = flat[b]
        out[b] = ndimage.gaussian_filter(vol, sigma_vox, mode="constant")[mask] / norm
    return out.reshape(var.shape)


def _batch_t(E, normE2, rows, scheme, Q, a, var_c, df, out, smooth=None):
    """t maps (B, V) for a batch of permutations/sign flips (Freedman–Lane); ``smooth``:
    ``(mask, sigma_vox)`` for variance smoothing (randomise ``-v``)."""
    B = rows.shape[0]
    n, k = Q.shape
    M = np.empty((B * k, n))
    for b in range(B):
        if scheme == "permute":
            Qp = Q[np.argsort(rows[b])]
        else:
            Qp = Q * rows[b][:, None]
        M[b * k:(b + 1) * k] = Qp.T
    G = M @ E                                    # (B*k, V): one BLAS call per batch
    if smooth is not None:
        G3 = G.reshape(B, k, -1)
        num = np.einsum("j,bjv->bv", a, G3)
        rss = np.maximum(normE2[None, :] - np.einsum("bjv,bjv->bv", G3, G3), 0.0)
        var = smooth_variance(rss / df, *smooth)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:] = np.where(var > 1e-24 * np.maximum(normE2, 1e-300) / df, num / np.sqrt(var * var_c), 0.0)
        return out
    _t_from_G(G, k, np.ascontiguousarray(a, dtype=np.float64), normE2, var_c / df, out)
    return out


def permuted_glm(Y, design, contrast, n_perm: int = 5000, tfce: bool = True, mask=None, *,
                 random_state=None, seed=None, tfce_setting: str = "3d", h: float | None = None,
                 e: float | None = None, connectivity: int | None = None, dh: float | None = None,
                 dh_mode: str = "fixed", cluster_forming_p: float | None = 0.001,
                 scheme: str = "auto", blocks=None, whole_blocks: bool = False,
                 permutations: PermutationSet | None = None, exact="auto",
                 batch_size: int | None = None, memory_mb: float = 256.0,
                 variance_smoothing=None) -> PermutedGLMResult:
    """Permutation inference for one t contrast of a mass-univariate GLM (both tails).

    Parameters
    ----------
    Y : array (n_subjects, n_voxels)
        Data, one row per subject (in-mask voxels in C order of ``mask`` when spatial inference
        is wanted).
    design : :class:`hfsmri.stats.design.Design` or array (n_subjects, k)
    contrast : contrast name (with a Design) or vector (k,)
    n_perm : int
        Random permutations (default 5000); the null also holds the identity. With few distinct
        permutations (see :mod:`hfsmri.stats.permutation`) all are enumerated instead.
    tfce : bool
        Compute TFCE and its max-statistic FWE p (needs ``mask``).
    mask : bool array (X, Y, Z), optional
        Grid of the voxels; required for TFCE and cluster inference.
    random_state, seed : int or numpy Generator (``seed`` is an alias); default 0 if both None
    tfce_setting : "3d" (H=2, E=0.5, 6-conn; randomise -T) or "skeleton" (H=2, E=1, 26-conn;
        randomise --T2); ``h``, ``e``, ``connectivity`` override. Cluster inference uses the same
        connectivity.
    dh : float, optional
        TFCE step. Default ``max/100`` of the unpermuted map of each tail.
    dh_mode : "fixed" (default, randomise: the unpermuted step is reused in every permutation),
        "per_map" (nilearn one-sided: each permuted map gets its own max/100),
        "per_map_abs" (nilearn two-sided: thresholds from max|t| of each map, both tails).
    cluster_forming_p : one-sided parametric p giving the cluster-forming t threshold
        (``t.isf(p, df)``); None disables cluster inference. Clusters are voxels with t > threshold.
    scheme : "auto" | "permute" | "signflip"
    blocks, whole_blocks : exchangeability blocks (permute/flip within blocks, or blocks as units)
    permutations : a :class:`~hfsmri.stats.permutation.PermutationSet` to use verbatim (row 0
        must be the identity), e.g. :func:`~hfsmri.stats.permutation.nilearn_permutations`.
    exact : "auto" | True | False, see :func:`~hfsmri.stats.permutation.make_permutation_set`
    batch_size : permutations per matrix product (default from ``memory_mb``)
    variance_smoothing : Gaussian SD in voxels (a number or one per axis; needs ``mask``), optional.
        The residual variance map is smoothed within the mask before t is formed, in the observed
        and in every permuted map (FSL randomise ``-v``, which takes the SD in mm; for small df).
        None or 0: plain t.

    Returns
    -------
    :class:`PermutedGLMResult`
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise InputDataError(f"data must be a 2D array (subjects x voxels), got shape {Y.shape}")
    X, c, columns, cname, dobj = _as_design(design, contrast)
    if c.ndim != 1:
        raise DesignError("permuted_glm tests t contrasts (a vector); use ols() for F tests", field="contrast")
    n, V = Y.shape
    if X.shape[0] != n:
        raise DesignError(f"data have {n} rows but the design has {X.shape[0]} subjects", field="design")
    bad = ~np.all(np.isfinite(Y), axis=1)
    if bad.any():
        who = list(np.asarray(getattr(dobj, "subjects", range(n)))[bad]) if dobj is not None else list(np.flatnonzero(bad))
        raise InputDataError(f"non-finite values (NaN/inf) in the data of subject(s) {who[:10]}")
    check_rank(X, columns)
    # Voxels whose values are constant to the data's precision (e.g. a map clipped at its maximum,
    # stored as float32) carry no information: t = 0 and p = 1 there, as randomise. Left as they
    # are, rounding noise of ~1e-7 relative can be fitted exactly by some permutation, which gives
    # t of ~1e8 and breaks the TFCE null. Zeroing the column makes its residual exactly 0.
    scale = np.maximum(np.abs(Y).max(axis=0), np.finfo(np.float64).tiny)
    flat = np.ptp(Y, axis=0) <= 1e-6 * scale
    if flat.any():
        Y = Y.copy()
        Y[:, flat] = 0.0
    if random_state is None:
        random_state = 0 if seed is None else seed
    setting = dict(_tf.SETTINGS.get(tfce_setting, {}))
    if not setting:
        raise ValueError(f"tfce_setting must be one of {sorted(_tf.SETTINGS)}, got {tfce_setting!r}")
    H = float(setting["h"] if h is None else h)
    E_ = float(setting["e"] if e is None else e)
    conn = int(setting["connectivity"] if connectivity is None else connectivity)
    if dh_mode not in ("fixed", "per_map", "per_map_abs"):
        raise ValueError(f"dh_mode must be 'fixed', 'per_map' or 'per_map_abs', got {dh_mode!r}")
    spatial = mask is not None
    if spatial:
        mask = np.asarray(mask, dtype=bool)
        if int(mask.sum()) != V:
            raise InputDataError(f"mask has {int(mask.sum())} voxels but the data have {V} columns")
        nbr = _tf.mask_neighbors(mask, conn)
    elif tfce:
        raise InputDataError("TFCE needs the voxel grid: pass mask=")
    do_clusters = spatial and cluster_forming_p is not None
    if scheme == "auto":
        scheme = choose_scheme(X, c)

    # --- observed GLM
    fit = ols(Y, X, c)
    t_obs = np.asarray(fit.t, dtype=np.float64)
    df = fit.df
    smooth = None
    if variance_smoothing is not None and np.any(np.asarray(variance_smoothing, dtype=float) > 0):
        if not spatial:
            raise InputDataError("variance smoothing needs the voxel grid: pass mask=")
        smooth = (mask, variance_smoothing)
        var_obs = smooth_variance(fit.sigma ** 2, mask, variance_smoothing)
        vc = float(c @ np.linalg.pinv(X.T @ X) @ c)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_obs = np.where((var_obs > 0) & (fit.sigma > 0), fit.effect / np.sqrt(var_obs * vc), 0.0)

    # --- permutation set
    if permutations is None:
        permutations = make_permutation_set(X, n_perm, scheme, random_state, blocks, whole_blocks, exact)
    else:
        if permutations.rows.shape[1] != n:
            raise DesignError(f"permutation rows have length {permutations.rows.shape[1]}, expected {n}")
        scheme = permutations.scheme
    rows = permutations.rows
    if scheme == "permute":
        if not np.array_equal(rows[0], np.arange(n)):
            raise DesignError("the first permutation must be the identity")
    elif not np.all(rows[0] == 1):
        raise DesignError("the first sign-flip row must be all +1")
    N = rows.shape[0]

    # --- Freedman–Lane pieces
    _, Z = partition(X, c)
    Uz = _orth(Z)
    E = Y - Uz @ (Uz.T @ Y) if Uz.shape[1] else Y.copy()
    normE2 = np.einsum("ij,ij->j", E, E)
    Q, R = np.linalg.qr(X)
    a = np.linalg.solve(R.T, c)
    var_c = float(c @ np.linalg.pinv(X.T @ X) @ c)

    # --- observed spatial statistics
    tf_obs = {}
    dh_tail = {}
    cl_thr = float(sps.t.isf(cluster_forming_p, df)) if do_clusters else None
    if tfce:
        for key, sign in (("pos", 1.0), ("neg", -1.0)):
            tail = sign * t_obs
            if dh is not None:
                dh_tail[key] = float(dh)
                thr = _tf.thresholds(tail.max(), dh)
            elif dh_mode == "per_map_abs":
                dh_tail[key] = float(np.abs(t_obs).max()) / 100
                thr = _tf.thresholds(float(np.abs(t_obs).max()), None)
            else:
                m = float(tail.max())
                if m <= 0:  # no supra-zero voxel in this tail: take the step of |t|
                    m_abs = float(np.abs(t_obs).max())
                    dh_tail[key] = (m_abs / 100) if m_abs > 0 else 1.0
                    thr = np.empty(0)
                else:
                    dh_tail[key] = m / 100
                    thr = _tf.thresholds(m, None)
            out = np.zeros(V)
            _tf._tfce_core(np.ascontiguousarray(tail), nbr, thr, E_, H, out)
            tf_obs[key] = out
    mode_code = {"fixed": 0, "per_map": 1, "per_map_abs": 2}[dh_mode]
    if dh is not None:
        mode_code = 0

    # --- null accumulation
    null_t = np.empty((N, 2))
    null_tf = np.zeros((N, 2))
    null_size = np.zeros((N, 2))
    null_mass = np.zeros((N, 2))
    cnt_t = np.ones((2, V), dtype=np.int64)       # identity counts for every voxel
    cnt_abs = np.ones(V, dtype=np.int64)
    cnt_tf = np.ones((2, V), dtype=np.int64)
    null_t[0] = (t_obs.max(), (-t_obs).max())
    if tfce:
        null_tf[0] = (tf_obs["pos"].max(), tf_obs["neg"].max())
    if do_clusters:
        for j, sign in enumerate((1.0, -1.0)):
            null_size[0, j], null_mass[0, j] = _tf.cluster_max(np.ascontiguousarray(sign * t_obs), nbr, cl_thr)
    k = X.shape[1]
    if batch_size is None:
        per_perm = (k + 3) * V * 8
        batch_size = int(max(1, min(64, memory_mb * 2 ** 20 // max(per_perm, 1))))
    t_thr_pos = t_obs - _TOL * np.maximum(1.0, np.abs(t_obs))
    t_thr_neg = t_obs + _TOL * np.maximum(1.0, np.abs(t_obs))
    abs_thr = np.abs(t_obs) - _TOL * np.maximum(1.0, np.abs(t_obs))
    if tfce:
        tf_thr = {key: tf_obs[key] - _TOL * np.maximum(1.0, tf_obs[key]) for key in tf_obs}
    Tbuf = np.empty((batch_size, V))
    if tfce:
        tf_pos = np.empty((batch_size, V))
        tf_neg = np.empty((batch_size, V))
    else:
        tf_pos = tf_neg = np.empty((batch_size, 1))
    for s in range(1, N, batch_size):
        r = rows[s:s + batch_size]
        B = r.shape[0]
        T = _batch_t(E, normE2, r, scheme, Q, a, var_c, df, Tbuf[:B], smooth)
        null_t[s:s + B, 0] = T.max(axis=1)
        null_t[s:s + B, 1] = -T.min(axis=1)
        _count(T, t_thr_pos, t_thr_neg, abs_thr, cnt_t[0], cnt_t[1], cnt_abs)
        if tfce or do_clusters:
            mt = np.zeros((B, 2))
            ms = np.zeros((B, 2))
            mm = np.zeros((B, 2))
            _tf.batch_spatial(T, nbr, bool(tfce), dh_tail.get("pos", 1.0), dh_tail.get("neg", 1.0), mode_code,
                              E_, H, bool(do_clusters), cl_thr if do_clusters else 0.0,
                              tf_pos[:B], tf_neg[:B], mt, ms, mm)
            if tfce:
                null_tf[s:s + B] = mt
                _count_ge(tf_pos[:B], tf_thr["pos"], cnt_tf[0])
                _count_ge(tf_neg[:B], tf_thr["neg"], cnt_tf[1])
            if do_clusters:
                null_size[s:s + B] = ms
                null_mass[s:s + B] = mm

    # --- p-values
    tails = {}
    for j, (key, sign) in enumerate((("pos", 1.0), ("neg", -1.0))):
        tail_t = sign * t_obs
        p_unc = cnt_t[j] / N
        tr = TailResult(p_unc=p_unc, p_fwe_t=_p_from_null(tail_t, null_t[:, j]), p_fdr=fdr_bh(p_unc),
                        null_max_t=null_t[:, j].copy())
        if tfce:
            tr.tfce = tf_obs[key]
            tr.p_unc_tfce = cnt_tf[j] / N
            tr.p_fwe_tfce = _p_from_null(tf_obs[key], null_tf[:, j])
            tr.null_max_tfce = null_tf[:, j].copy()
            tr.tfce_dh = dh_tail[key]
        if do_clusters:
            labels, ncl = _tf.label_above(np.ascontiguousarray(tail_t), nbr, cl_thr)
            sizes = np.bincount(labels, minlength=ncl + 1)[1:].astype(float)
            masses = np.bincount(labels, weights=np.where(labels > 0, tail_t - cl_thr, 0.0), minlength=ncl + 1)[1:]
            p_ext = np.ones(V)
            p_mass = np.ones(V)
            if ncl:
                pe = _p_from_null(sizes, null_size[:, j])
                pm = _p_from_null(masses, null_mass[:, j])
                inside = labels > 0
                p_ext[inside] = pe[labels[inside] - 1]
                p_mass[inside] = pm[labels[inside] - 1]
            tr.cluster_labels = labels
            tr.cluster_sizes = sizes
            tr.cluster_masses = masses
            tr.p_fwe_extent = p_ext
            tr.p_fwe_mass = p_mass
            tr.null_max_size = null_size[:, j].copy()
            tr.null_max_mass = null_mass[:, j].copy()
        tails[key] = tr

    two = {"p_unc": cnt_abs / N, "p_fwe_t": _p_from_null(np.abs(t_obs), null_t.max(axis=1))}
    if tfce:
        signed = np.where(t_obs >= 0, tf_obs["pos"], -tf_obs["neg"])
        two["tfce"] = signed
        two["p_fwe_tfce"] = _p_from_null(np.abs(signed), null_tf.max(axis=1))
    settings = {"tfce": bool(tfce), "H": H, "E": E_, "connectivity": conn, "dh_mode": dh_mode,
                "dh": {k_: v for k_, v in dh_tail.items()}, "tfce_setting": tfce_setting,
                "random_state": random_state if isinstance(random_state, (int, np.integer)) else None,
                "blocks": None if blocks is None else list(map(str, np.asarray(blocks))),
                "whole_blocks": whole_blocks, "n_possible": permutations.n_possible,
                "perm_key": perm_key(rows), "variance_smoothing_vox": None if smooth is None else
                [float(x) for x in np.broadcast_to(np.asarray(variance_smoothing, float), (3,))]}
    return PermutedGLMResult(
        t=t_obs, effect=fit.effect, se=fit.se, df=df, cohens_d=fit.cohens_d, partial_r=fit.partial_r,
        p_param=fit.p, pos=tails["pos"], neg=tails["neg"], two_sided=two, contrast=c, contrast_name=cname,
        columns=columns, scheme=scheme, n_perm=0 if permutations.exact else N - 1, n_null=N,
        exact=permutations.exact, cluster_forming_p=cluster_forming_p if do_clusters else None,
        cluster_threshold=cl_thr, settings=settings)
