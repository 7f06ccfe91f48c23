"""ComBat harmonisation of multi-site data (Johnson 2007; Fortin 2017, 2018).

Model, for subject ``i`` scanned at site ``b`` and feature ``v`` (an ROI or a voxel)::

    y_iv = alpha_v + x_i beta_v + gamma_bv + delta_bv * eps_iv,    eps_iv ~ N(0, sigma_v^2)

``x_i`` are the *protected* biological covariates (group, age, sex, ...): their effects are
estimated jointly with the site effects and put back after the correction, so that harmonisation
does not remove them. The additive (``gamma``) and multiplicative (``delta``) site effects are
shrunk towards a common prior over features by empirical Bayes (parametric: normal prior on
``gamma``, inverse-gamma prior on ``delta``; non-parametric: the empirical distribution of the
other features' estimates). The harmonised data are::

    y*_iv = (y_iv - a_v - x_i b_v - s_v g*_bv) / sqrt(d*_bv) + a_v + x_i b_v

with ``s_v^2`` the pooled residual variance (divisor ``n``, as sva's ComBat and neuroCombat).

Conventions (same as the R package sva and neuroCombat 0.2.12, checked in the tests):

* the design is ``[one-hot site (no intercept), continuous covariates, categorical covariates
  one-hot without their first level]``; the grand mean is the sample-size weighted mean of the
  site intercepts (or the reference site's intercept when ``ref_site`` is given);
* per-site variances use ``ddof=1``; a zero variance is replaced by 1 (as sva);
* the prior moments ``gamma_bar``/``tau^2`` (``ddof=1``) and the inverse-gamma ``a, b`` are
  method-of-moments estimates over the features;
* the parametric EB fixed point is iterated *per feature* until the relative change of both
  ``gamma*`` and ``delta*`` is below ``tol`` (sva stops when the largest change over all features
  is below 1e-4; the fixed point is the same, and per-feature stopping makes the result
  independent of how features are split into chunks).

Memory: the estimator works on feature chunks of ``chunk_size`` columns (the data may be a
``numpy.memmap``), and the EB steps only need the per-site means and variances of the
standardised data, so voxel-wise maps (subjects x voxels) are harmonised with a few passes over
the data. Features with zero pooled variance (e.g. voxels outside the brain) are passed through
unchanged and left out of the priors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DesignError, HfsmriError, InputDataError

__all__ = ["ComBat", "combat"]


@dataclass
class _CovariateEncoder:
    """Turns a covariates table into design columns (training levels kept for new data)."""

    continuous: list
    categorical: dict  # name -> list of levels (first is the reference, dropped)
    centers: dict       # continuous name -> training mean (numerical conditioning only)

    @classmethod
    def fit(cls, covars: pd.DataFrame | None, categorical: list | None) -> "_CovariateEncoder":
        if covars is None or covars.shape[1] == 0:
            return cls([], {}, {})
        cont, cats, centers = [], {}, {}
        for name in covars.columns:
            col = covars[name]
            is_cat = (name in categorical) if categorical is not None else not (
                pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))
            if col.isna().any():
                raise InputDataError(f"{int(col.isna().sum())} missing value(s); ComBat needs every "
                                     "protected covariate for every subject", field=f"covariate {name!r}")
            if is_cat:
                levels = sorted(pd.unique(col.astype(str)))
                cats[name] = levels
            else:
                values = pd.to_numeric(col, errors="coerce")
                if values.isna().any():
                    raise InputDataError("is not numeric; list it in `categorical`",
                                         field=f"covariate {name!r}")
                cont.append(name)
                centers[name] = float(values.mean())
        return cls(cont, cats, centers)

    @property
    def columns(self) -> list[str]:
        return list(self.continuous) + [f"{k}[{lev}]" for k, levs in self.categorical.items() for lev in levs[1:]]

    def transform(self, covars: pd.DataFrame | None, n: int) -> np.ndarray:
        if not self.continuous and not self.categorical:
            return np.zeros((n, 0))
        if covars is None:
            raise InputDataError("the model protects covariates "
                                 f"{self.continuous + list(self.categorical)}; pass them for the new data")
        cols = []
        for name in self.continuous:
            if name not in covars:
                raise InputDataError("missing from the covariates of the new data", field=f"covariate {name!r}")
            values = pd.to_numeric(covars[name], errors="coerce").to_numpy(float)
            if not np.all(np.isfinite(values)):
                raise InputDataError("missing or non-numeric values", field=f"covariate {name!r}")
            cols.append((values - self.centers[name])[:, None])
        for name, levels in self.categorical.items():
            if name not in covars:
                raise InputDataError("missing from the covariates of the new data", field=f"covariate {name!r}")
            values = covars[name].astype(str).to_numpy()
            unknown = sorted(set(values) - set(levels))
            if unknown:
                raise InputDataError(f"level(s) {unknown} were not seen when the model was fitted "
                                     f"(known: {levels})", field=f"covariate {name!r}")
            cols.append(np.stack([(values == lev).astype(float) for lev in levels[1:]], axis=1)
                        if len(levels) > 1 else np.zeros((n, 0)))
        return np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))


def _as_2d(X, name="X"):
    """(array view, index, columns) of a subjects x features table/array; no copy if possible."""
    index = columns = None
    if isinstance(X, pd.DataFrame):
        index, columns = X.index, X.columns
        try:
            arr = X.to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise InputDataError("every column must be numeric", field=name) from None
    else:
        arr = X if isinstance(X, np.ndarray) else np.asarray(X, dtype=float)
    if arr.ndim != 2:
        raise InputDataError(f"must be 2-D (subjects x features), got shape {arr.shape}", field=name)
    return arr, index, columns


def _site_array(sites, n, index=None):
    if (isinstance(sites, pd.Series) and index is not None and not sites.index.equals(index)
            and set(index) <= set(sites.index)):
        sites = sites.loc[index]             # align a labelled Series on the table's subjects
    raw = np.asarray(sites, dtype=object)
    if raw.shape != (n,):
        raise InputDataError(f"{raw.size} site label(s) for {n} subject(s)", field="sites")
    if np.any(pd.isna(raw)):
        raise InputDataError(f"{int(np.sum(pd.isna(raw)))} missing site label(s)", field="sites")
    return raw.astype(str)


def _covars_frame(covars, n, index=None):
    if covars is None:
        return None
    if isinstance(covars, pd.Series):
        covars = covars.to_frame()
    if not isinstance(covars, pd.DataFrame):
        arr = np.asarray(covars)
        arr = arr[:, None] if arr.ndim == 1 else arr
        covars = pd.DataFrame(arr, columns=[f"c{k}" for k in range(arr.shape[1])])
    elif index is not None and not covars.index.equals(index) and set(index) <= set(covars.index):
        covars = covars.loc[index]
    if len(covars) != n:
        raise InputDataError(f"{len(covars)} row(s) for {n} subject(s)", field="covariates")
    return covars.reset_index(drop=True)


def _chunks(n_features, size):
    for start in range(0, n_features, size):
        yield slice(start, min(start + size, n_features))


class ComBat:
    """ComBat harmonisation with empirical Bayes, scikit-learn style.

    Parameters
    ----------
    covariates : list of str, optional
        Columns of the ``covars`` table to protect (biological effects kept in the data, e.g.
        ``["group", "age", "sex"]``). ``None`` protects every column given to :meth:`fit`.
    categorical : list of str, optional
        Which protected covariates are categorical. ``None``: non-numeric and boolean columns.
    parametric : bool
        Parametric priors (normal / inverse gamma, Johnson 2007) or non-parametric ones
        (empirical distribution of the other features, leave-one-out).
    eb : bool
        Empirical Bayes shrinkage; ``False`` uses the per-site least-squares estimates directly.
    mean_only : bool
        Correct only the additive site effect (no scaling), as ``mean.only`` in sva.
    ref_site : str, optional
        Reference site (Zhang 2018 "M-ComBat"): other sites are mapped onto it, its data are
        returned unchanged.
    tol, max_iter : float, int
        Per-feature convergence of the parametric EB fixed point (relative change).
    chunk_size : int
        Features processed at a time (bounds the memory of temporaries for voxel-wise maps).
    prior_features : int, optional
        Non-parametric only: number of features (drawn with ``random_state``) that form the
        empirical prior. Its cost is O(features x prior features); ``None`` uses all features.
    random_state : int, optional
        Seed for ``prior_features`` sampling (the only random step).

    Attributes (after fit)
    ----------------------
    sites_ : ndarray of str, the site labels (sorted). ``n_features_in_``.
    design_columns_ : names of the design columns (sites then covariates).
    grand_mean_ : (n_features,) intercept at the reference covariate values.
    beta_ : (n_covariate_columns, n_features) protected covariate effects.
    var_pooled_ : (n_features,) pooled residual variance (divisor n).
    gamma_hat_, delta_hat_ : (n_sites, n_features) least-squares site effects (standardised units).
    gamma_star_, delta_star_ : (n_sites, n_features) empirical-Bayes site effects.
    gamma_bar_, tau2_, a_prior_, b_prior_ : (n_sites,) prior hyper-parameters.
    valid_ : (n_features,) bool, features that are harmonised (non-zero pooled variance).
    n_iter_ : int, largest number of EB iterations used by a feature.
    """

    def __init__(self, covariates=None, categorical=None, *, parametric: bool = True, eb: bool = True,
                 mean_only: bool = False, ref_site=None, tol: float = 1e-8, max_iter: int = 1000,
                 chunk_size: int = 65536, prior_features: int | None = None, random_state=0):
        self.covariates = covariates
        self.categorical = categorical
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_site = ref_site
        self.tol = tol
        self.max_iter = max_iter
        self.chunk_size = chunk_size
        self.prior_features = prior_features
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _select_covars(self, covars):
        if covars is None:
            if self.covariates:
                raise InputDataError(f"covariates {list(self.covariates)} are protected but no covariates "
                                     "table was given", field="covars")
            return None
        if self.covariates is None:
            return covars
        missing = [c for c in self.covariates if c not in covars.columns]
        if missing:
            raise InputDataError(f"protected covariate(s) {missing} not in the covariates table "
                                 f"(columns: {list(covars.columns)})", field="covars")
        return covars[list(self.covariates)]

    def _check_fitted(self):
        if not hasattr(self, "grand_mean_"):
            raise HfsmriError("this ComBat model is not fitted yet; call fit() first")

    # ------------------------------------------------------------------ fit
    def fit(self, X, sites, covars=None) -> "ComBat":
        """Estimate site effects and priors.

        Parameters
        ----------
        X : (n_subjects, n_features) array or DataFrame (ROI table or voxels in a mask); finite.
        sites : (n_subjects,) site labels (any hashable; compared as strings).
        covars : DataFrame (n_subjects rows) of biological covariates to protect, optional.
        """
        Y, index, columns = _as_2d(X)
        n, F = Y.shape
        s = _site_array(sites, n, index)
        cov = self._select_covars(_covars_frame(covars, n, index))
        self.sites_, site_idx, counts = np.unique(s, return_inverse=True, return_counts=True)
        n_b = len(self.sites_)
        if n_b < 2:
            raise DesignError(f"ComBat needs at least 2 sites, got {list(self.sites_)}", field="sites")
        small = [str(b) for b, c in zip(self.sites_, counts) if c < 2]
        if small:
            raise DesignError(f"site(s) {small} have fewer than 2 subjects; a site's scale cannot be "
                              "estimated from one subject (merge or drop them)", field="sites")
        if self.ref_site is not None and str(self.ref_site) not in self.sites_:
            raise DesignError(f"reference site {self.ref_site!r} is not among the sites {list(self.sites_)}",
                              field="ref_site")
        self._encoder = _CovariateEncoder.fit(cov, self.categorical)
        C = self._encoder.transform(cov, n)
        B = np.zeros((n, n_b))
        B[np.arange(n), site_idx] = 1.0
        D = np.concatenate([B, C], axis=1)
        self.design_columns_ = [f"site[{b}]" for b in self.sites_] + self._encoder.columns
        if np.linalg.matrix_rank(D) < D.shape[1]:
            raise DesignError("the protected covariates are collinear with the sites (e.g. all patients "
                              "at one site, or a covariate constant within every site): site and biology "
                              f"cannot be separated; design columns {self.design_columns_}", field="covariates")
        n_cov = C.shape[1]
        ref = None if self.ref_site is None else int(np.flatnonzero(self.sites_ == str(self.ref_site))[0])
        self.ref_index_ = ref
        proj = np.linalg.solve(D.T @ D, D.T)           # (p, n) least-squares projector
        weights = counts / n
        members = [np.flatnonzero(site_idx == k) for k in range(n_b)]

        self.n_features_in_ = F
        self._index, self._columns = index, columns
        self.grand_mean_ = np.empty(F)
        self.beta_ = np.empty((n_cov, F))
        self.var_pooled_ = np.empty(F)
        self.gamma_hat_ = np.empty((n_b, F))
        var_raw = np.empty((n_b, F))                   # per-site variance of standardised data
        for sl in _chunks(F, self.chunk_size):
            y = np.asarray(Y[:, sl], dtype=float)
            if not np.all(np.isfinite(y)):
                bad = sl.start + int(np.flatnonzero(~np.all(np.isfinite(y), axis=0))[0])
                raise InputDataError("contains NaN/inf (feature "
                                     f"{columns[bad] if columns is not None else bad}); ComBat needs finite data",
                                     field="X")
            bhat = proj @ y
            resid = y - D @ bhat
            if ref is None:
                gm = weights @ bhat[:n_b]
                vp = np.mean(resid ** 2, axis=0)
            else:
                gm = bhat[ref]
                vp = np.mean(resid[members[ref]] ** 2, axis=0)
            self.grand_mean_[sl], self.beta_[:, sl], self.var_pooled_[sl] = gm, bhat[n_b:], vp
            sd = np.sqrt(np.where(vp > 0, vp, 1.0))
            z = (y - gm - C @ bhat[n_b:]) / sd
            for k, idx in enumerate(members):
                self.gamma_hat_[k, sl] = z[idx].mean(axis=0)
                var_raw[k, sl] = z[idx].var(axis=0, ddof=1)
        # zero pooled variance (up to rounding relative to the feature's level): constant feature
        thr = 1e-20 * np.maximum(self.grand_mean_ ** 2, np.finfo(float).tiny)
        self.valid_ = np.isfinite(self.var_pooled_) & (self.var_pooled_ > thr)
        if self.valid_.sum() < 2:
            raise InputDataError("fewer than 2 features vary across subjects; nothing to harmonise", field="X")
        self._var_raw = var_raw
        self._counts = counts
        self._estimate_site_effects()
        return self

    def _estimate_site_effects(self):
        v = self.valid_
        g_hat = self.gamma_hat_[:, v]
        var_raw = self._var_raw[:, v]
        d_hat = np.ones_like(var_raw) if self.mean_only else np.where(var_raw == 0, 1.0, var_raw)
        self.delta_hat_ = np.ones_like(self.gamma_hat_)
        self.delta_hat_[:, v] = d_hat
        n_b = len(self.sites_)
        self.gamma_bar_ = g_hat.mean(axis=1)
        self.tau2_ = g_hat.var(axis=1, ddof=1)
        m, s2 = d_hat.mean(axis=1), d_hat.var(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.a_prior_ = (2 * s2 + m ** 2) / s2
            self.b_prior_ = (m * s2 + m ** 3) / s2
        g_star, d_star = np.empty_like(g_hat), np.empty_like(d_hat)
        self.n_iter_ = 0
        for k in range(n_b):
            nk = float(self._counts[k])
            if not self.eb:
                g_star[k], d_star[k] = g_hat[k], d_hat[k]
            elif self.parametric:
                g_star[k], d_star[k] = self._parametric(k, nk, g_hat[k], d_hat[k], var_raw[k])
            else:
                g_star[k], d_star[k] = self._nonparametric(nk, g_hat[k], d_hat[k], var_raw[k])
        if self.ref_index_ is not None:
            g_star[self.ref_index_], d_star[self.ref_index_] = 0.0, 1.0
        self.gamma_star_ = np.zeros_like(self.gamma_hat_)
        self.delta_star_ = np.ones_like(self.gamma_hat_)
        self.gamma_star_[:, v], self.delta_star_[:, v] = g_star, d_star

    def _parametric(self, k, nk, g_hat, d_hat, var_raw):
        """Johnson 2007 parametric EB (sva's ``it.sol``), vectorised over features."""
        g_bar, t2 = self.gamma_bar_[k], self.tau2_[k]
        if self.mean_only:  # postmean(g_hat, g_bar, 1, 1, t2) as sva/neuroCombat
            return (t2 * g_hat + g_bar) / (t2 + 1.0), np.ones_like(d_hat)
        a, b = self.a_prior_[k], self.b_prior_[k]
        ss_within = (nk - 1.0) * var_raw   # sum_i (z_i - g_hat)^2 over the site's subjects
        g_old, d_old = g_hat.copy(), d_hat.copy()
        g_new, d_new = g_old.copy(), d_old.copy()
        active = np.arange(g_hat.size)
        it = 0
        while active.size and it < self.max_iter:
            it += 1
            dg = d_old[active]
            gn = (t2 * nk * g_hat[active] + dg * g_bar) / (t2 * nk + dg)
            sum2 = ss_within[active] + nk * (g_hat[active] - gn) ** 2
            dn = (0.5 * sum2 + b) / (nk / 2.0 + a - 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                change = np.maximum(np.abs(gn - g_old[active]) / np.abs(g_old[active]),
                                    np.abs(dn - d_old[active]) / np.abs(d_old[active]))
            g_new[active], d_new[active] = gn, dn
            g_old[active], d_old[active] = gn, dn
            active = active[~(np.nan_to_num(change, nan=0.0) < self.tol)]
        self.n_iter_ = max(self.n_iter_, it)
        return g_new, d_new

    def _nonparametric(self, nk, g_hat, d_hat, var_raw):
        """sva's ``int.eprior``: posterior means under the empirical prior of the other features.

        Likelihood of feature j's data under feature k's (gamma, delta), in log space:
        -nk/2 log(2 pi d_k) - [ (nk-1) var_j + nk (g_j - g_k)^2 ] / (2 d_k)."""
        F = g_hat.size
        prior = np.arange(F)
        if self.prior_features is not None and self.prior_features < F:
            rng = np.random.default_rng(self.random_state)
            prior = np.sort(rng.choice(F, size=int(self.prior_features), replace=False))
        gp, dp = g_hat[prior], d_hat[prior]
        ss = (nk - 1.0) * var_raw
        g_star, d_star = np.empty(F), np.empty(F)
        rows = max(1, int(4_000_000 // max(prior.size, 1)))
        const = -0.5 * nk * np.log(2 * np.pi * dp)
        for sl in _chunks(F, rows):
            j = np.arange(sl.start, sl.stop)
            ll = const[None, :] - (ss[j, None] + nk * (g_hat[j, None] - gp[None, :]) ** 2) / (2 * dp[None, :])
            ll[prior[None, :] == j[:, None]] = -np.inf     # leave the feature itself out
            ll -= ll.max(axis=1, keepdims=True)
            w = np.exp(ll)
            w /= w.sum(axis=1, keepdims=True)
            g_star[sl], d_star[sl] = w @ gp, w @ dp
        return g_star, d_star

    # ------------------------------------------------------------------ transform
    def transform(self, X, sites, covars=None, out=None):
        """Harmonise data of subjects from fitted sites (training or new subjects).

        ``covars`` must hold the protected covariates of these subjects. ``out`` (optional,
        array of X's shape, e.g. a memmap) receives the result. Returns an array, or a
        DataFrame with X's index/columns when X is a DataFrame.
        """
        self._check_fitted()
        Y, index, columns = _as_2d(X)
        n, F = Y.shape
        if F != self.n_features_in_:
            raise InputDataError(f"has {F} feature(s), the model was fitted on {self.n_features_in_}", field="X")
        s = _site_array(sites, n, index)
        unknown = sorted(set(s) - set(self.sites_))
        if unknown:
            raise DesignError(f"site(s) {unknown} were not in the data the model was fitted on "
                              f"(known: {list(self.sites_)})", field="sites")
        site_idx = np.searchsorted(self.sites_, s)
        cov = self._select_covars(_covars_frame(covars, n, index)) if self._encoder.columns else None
        C = self._encoder.transform(cov, n)
        result = np.empty((n, F)) if out is None else out
        for sl in _chunks(F, self.chunk_size):
            y = np.asarray(Y[:, sl], dtype=float)
            if not np.all(np.isfinite(y)):
                raise InputDataError("contains NaN/inf; ComBat needs finite data", field="X")
            v = self.valid_[sl]
            fitted = self.grand_mean_[sl] + C @ self.beta_[:, sl]
            sd = np.sqrt(np.where(v, self.var_pooled_[sl], 1.0))
            z = (y - fitted) / sd
            z = (z - self.gamma_star_[site_idx, sl]) / np.sqrt(self.delta_star_[site_idx, sl])
            res = z * sd + fitted
            res[:, ~v] = y[:, ~v]
            if self.ref_index_ is not None:
                ref_rows = site_idx == self.ref_index_
                res[ref_rows] = y[ref_rows]
            result[:, sl] = res
        if columns is not None and out is None:
            return pd.DataFrame(result, index=index, columns=columns)
        return result

    def fit_transform(self, X, sites, covars=None, out=None):
        """:meth:`fit` then :meth:`transform` on the same subjects."""
        return self.fit(X, sites, covars).transform(X, sites, covars, out=out)

    def site_effects(self) -> pd.DataFrame:
        """Estimated site effects in data units: additive ``sigma * gamma*`` and scale ``sqrt(delta*)``
        per site and feature (long table: site, feature, additive, scale)."""
        self._check_fitted()
        feats = self._columns if self._columns is not None else np.arange(self.n_features_in_)
        sd = np.sqrt(np.where(self.valid_, self.var_pooled_, 0.0))
        rows = []
        for k, site in enumerate(self.sites_):
            rows.append(pd.DataFrame({"site": site, "feature": feats,
                                      "additive": self.gamma_star_[k] * sd,
                                      "scale": np.sqrt(self.delta_star_[k])}))
        return pd.concat(rows, ignore_index=True)


def combat(X, sites, covars=None, **kwargs):
    """One-call ComBat: ``ComBat(**kwargs).fit_transform(X, sites, covars)``."""
    return ComBat(**kwargs).fit_transform(X, sites, covars)
