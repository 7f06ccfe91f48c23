"""ROI-level power by simulation (the default engine of ``hfsmri power``).

Each simulated study has ``n`` patients and ``n`` controls. Every test row of
:func:`hfsmri.power.specs.power_tests` is one ROI value per subject, drawn as the simulator plants
its noise-free metric (see :mod:`hfsmri.simulate.effects`):

* controls: ``z ~ N(0, 1)`` (between-subject variability in SD units);
* patients: ``direction * cohens_d + z``, where with a clinical link ``{score, r}``
  ``z = r * c + sqrt(1 - r^2) * e`` and ``c`` is the patient's standardised score (``N(0, 1)``);
* the rows of one effect (its analyses/metrics) share the subject's latent ``e``;
* ``reliability < 1`` adds measurement noise: observed = ``sqrt(rel) * value + sqrt(1 - rel) * noise``
  (the observed d is ``sqrt(rel) * cohens_d``);
* each analysis/metric family also gets ``n_null`` null ROIs (no effect) to measure false positives.

Tests, as the pipeline's ROI tables (:func:`hfsmri.stats.roi.roi_tests`):

* group: two-sided pooled-variance t-test patients vs controls per ROI; p from label permutations
  (``test="permutation"``, ``(1 + #{|t*| >= |t|}) / (1 + n_perm)``) or the t distribution
  (``"parametric"``); FDR = Benjamini–Hochberg across the family's ROIs; FWE = max-|t| over the
  family's ROIs (permutation) or Holm (parametric);
* clinical: Pearson correlation with every score among patients, two-sided, corrected across all
  ROI x score tests of the family (FDR as correlations.tsv; FWE max-|r| or Holm).

A planted effect is *detected* when its test is significant at ``alpha`` with the planted sign. Every
other test (null ROIs, effect ROIs vs scores they are not linked to, zero-size effects) is a null
test; their rejections are false positives.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import stdtr

from ..errors import HfsmriError
from ..stats.fdr import fdr_bh
from .analytic import correlation_power, ttest_power

__all__ = ["roi_power"]


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (strong FWER control)."""
    m = p.size
    order = np.argsort(p, kind="mergesort")
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


class _Layout:
    """Columns of the simulated data matrix: effect rows then null ROIs, grouped by family."""

    def __init__(self, tests: pd.DataFrame, n_null: int):
        fams = list(dict.fromkeys(tests["family"]))
        cols = []
        for f in fams:
            for _, r in tests[tests["family"] == f].iterrows():
                cols.append({"family": f, "test_row": int(r.name), "effect_id": r["effect_id"],
                             "direction": int(r["direction"]), "d": float(r["cohens_d"]),
                             "score": r["clinical_score"] if isinstance(r["clinical_score"], str) else None,
                             "r": float(r["clinical_r"])})
            for k in range(n_null):
                cols.append({"family": f, "test_row": -1, "effect_id": f"null-{k + 1}", "direction": 0,
                             "d": 0.0, "score": None, "r": 0.0})
        self.cols = pd.DataFrame(cols)
        self.families = fams
        self.fam_index = self.cols["family"].map({f: i for i, f in enumerate(fams)}).to_numpy()
        self.starts = np.array([int(np.flatnonzero(self.fam_index == i)[0]) for i in range(len(fams))])
        self.effects = list(dict.fromkeys(tests["effect_id"]))
        index = {e: i for i, e in enumerate(self.effects)}
        self.latent = np.array([index[e] if row >= 0 else -1
                                for e, row in zip(self.cols["effect_id"], self.cols["test_row"])], dtype=int)
        self.scores = sorted({s for s in self.cols["score"] if isinstance(s, str)})
        self.R = len(self.cols)

    def draw(self, rng, n_pat, n_con, reliability):
        """(Y patients+controls x R, scores patients x S)."""
        if not hasattr(self, "_shift"):
            self._shift = (self.cols["direction"] * self.cols["d"]).to_numpy(float)
            self._score = np.array([self.scores.index(s) if isinstance(s, str) else -1 for s in self.cols["score"]])
            self._score = np.where(self.latent >= 0, self._score, -1)
            self._r = np.where(self._score >= 0, self.cols["r"].to_numpy(float), 0.0)
            self._eff = self.latent >= 0
            self._clin = self._score >= 0
        N = n_pat + n_con
        latent = rng.standard_normal((N, len(self.effects)))
        C = rng.standard_normal((n_pat, len(self.scores)))
        Y = rng.standard_normal((N, self.R))            # null ROIs use these directly
        eff, clin = self._eff, self._clin
        Y[:, eff] = latent[:, self.latent[eff]]
        if clin.any():
            r = self._r[clin]
            Y[:n_pat, clin] = r * C[:, self._score[clin]] + np.sqrt(1 - r * r) * Y[:n_pat, clin]
        Y[:n_pat] += self._shift
        if reliability < 1:
            Y = np.sqrt(reliability) * Y + np.sqrt(1 - reliability) * rng.standard_normal(Y.shape)
        return Y, C


def _group_t(Y, labels):
    """Pooled-variance t (group 1 minus group 0) of every column, for label rows ``labels`` (k x N)."""
    N = Y.shape[0]
    n1 = labels.sum(axis=1, keepdims=True)
    n0 = N - n1
    s1 = labels @ Y
    tot = Y.sum(axis=0)
    m1, m0 = s1 / n1, (tot - s1) / n0
    diff = m1 - m0
    ss_tot = (Y ** 2).sum(axis=0) - tot ** 2 / N
    ss_w = ss_tot - (n1 * n0 / N) * diff ** 2
    se = np.sqrt(np.maximum(ss_w, 0) / (N - 2) * (1 / n1 + 1 / n0))
    return diff / se


def _corr(Yp, S):
    """Pearson r of every column of ``Yp`` (n x R) with each score; ``S`` (k x n x n_scores) -> (k, n_scores, R)."""
    Yc = Yp - Yp.mean(axis=0)
    Yc /= np.linalg.norm(Yc, axis=0)
    Sc = S - S.mean(axis=1, keepdims=True)
    Sc /= np.linalg.norm(Sc, axis=1, keepdims=True)
    return np.matmul(Sc.transpose(0, 2, 1), Yc)


def roi_power(tests: pd.DataFrame, ns, n_sim: int = 100, seed: int = 0, alpha: float = 0.05,
              test: str = "permutation", n_perm: int = 1000, n_null: int = 10, reliability: float = 1.0,
              progress=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monte Carlo power of the ROI tests of ``tests`` (rows of :func:`power_tests`).

    Parameters
    ----------
    tests : DataFrame from :func:`hfsmri.power.specs.power_tests`
    ns : group sizes (patients = controls = n)
    n_sim : simulated studies per size
    seed : base seed; study ``k`` of size ``n`` uses ``default_rng([seed, n, k])`` (a size's
        result does not depend on which other sizes are run)
    alpha : significance level (corrected p < alpha)
    test : "permutation" (as the pipeline) or "parametric" (t distribution; FWE = Holm)
    n_perm : permutations per simulated study (permutation test)
    n_null : null ROIs added to each analysis/metric family
    reliability : share of the observed ROI variance that is between-subject signal (1 = none
        of measurement noise)

    Returns
    -------
    power : one row per n and planted test: ``n_per_group, effect_id, analysis, metric, contrast,
        direction, effect_size_type, effect_size, power_uncorrected, power_fdr, power_fwe,
        analytic_uncorrected, mc_se, n_sim, primary``
    false_positives : one row per n and (family, contrast kind) plus ``all/all``: ``n_null_tests``,
        per-test rates ``fpr_*`` and family-wise rates ``fwer_*`` (any null test significant).
    """
    if test not in ("permutation", "parametric"):
        raise HfsmriError(f"test must be 'permutation' or 'parametric', got {test!r}", field="test")
    ns = [int(n) for n in ns]
    if not ns or min(ns) < 3:
        raise HfsmriError(f"group sizes must be >= 3, got {ns}", field="n")
    if int(n_sim) < 1:
        raise HfsmriError(f"n_sim must be >= 1, got {n_sim}", field="n_sim")
    if not (0 < reliability <= 1):
        raise HfsmriError(f"reliability must be in (0, 1], got {reliability}", field="reliability")
    if test == "permutation" and int(n_perm) < 1:
        raise HfsmriError("n_perm must be >= 1 for the permutation test", field="n_perm")
    lay = _Layout(tests, int(n_null))
    S = len(lay.scores)
    R = lay.R
    # planted flags
    planted_group = (lay.cols["d"].to_numpy() > 0) & (lay.cols["test_row"].to_numpy() >= 0)
    planted_corr = np.zeros((S, R), bool)
    for j, col in lay.cols.iterrows():
        if isinstance(col["score"], str) and col["r"] != 0:
            planted_corr[lay.scores.index(col["score"]), j] = True
    sign_group = lay.cols["direction"].to_numpy()
    sign_corr = np.sign(lay.cols["r"].to_numpy())
    fam = lay.fam_index
    n_fam = len(lay.families)

    power_rows, fp_rows = [], []
    for n in ns:
        det = {"group": np.zeros((3, R)), "corr": np.zeros((3, S, R))}
        fp_test = {"group": np.zeros((3, n_fam)), "corr": np.zeros((3, n_fam))}
        fp_any = {"group": np.zeros((3, n_fam)), "corr": np.zeros((3, n_fam))}
        fp_study = np.zeros(3)
        labels0 = np.r_[np.ones(n), np.zeros(n)]
        for k in range(int(n_sim)):
            rng = np.random.default_rng([int(seed), n, k])
            Y, C = lay.draw(rng, n, n, reliability)
            # ---- group contrast
            t_obs = _group_t(Y, labels0[None, :])[0]
            corr_obs = _corr(Y[:n], C[None])[0] if S else np.zeros((0, R))
            if test == "permutation":
                perms = rng.permuted(np.tile(labels0, (int(n_perm), 1)), axis=1)
                t_null = np.abs(_group_t(Y, perms))
                p_g = (1 + (t_null >= np.abs(t_obs) - 1e-12).sum(0)) / (1 + n_perm)
                fam_max = np.maximum.reduceat(t_null, lay.starts, axis=1)
                p_g_fwe = np.empty(R)
                for f in range(n_fam):
                    sel = fam == f
                    p_g_fwe[sel] = (1 + (fam_max[:, f][:, None] >= np.abs(t_obs[sel])[None, :] - 1e-12).sum(0)) / (1 + n_perm)
                if S:
                    order = np.argsort(rng.random((int(n_perm), n)), axis=1)
                    r_null = np.abs(_corr(Y[:n], C[order]))              # (k, S, R)
                    p_c = (1 + (r_null >= np.abs(corr_obs)[None] - 1e-12).sum(0)) / (1 + n_perm)
                    p_c_fwe = np.empty((S, R))
                    for f in range(n_fam):
                        sel = fam == f
                        mx = r_null[:, :, sel].reshape(len(r_null), -1).max(axis=1)
                        p_c_fwe[:, sel] = (1 + (mx[:, None, None] >= np.abs(corr_obs[:, sel])[None] - 1e-12)
                                           .sum(0)) / (1 + n_perm)
            else:
                p_g = 2 * stdtr(2 * n - 2, -np.abs(t_obs))
                p_g_fwe = np.empty(R)
                for f in range(n_fam):
                    sel = fam == f
                    p_g_fwe[sel] = _holm(p_g[sel])
                if S:
                    rr = np.clip(corr_obs, -1 + 1e-15, 1 - 1e-15)
                    tc = rr * np.sqrt((n - 2) / (1 - rr ** 2))
                    p_c = 2 * stdtr(n - 2, -np.abs(tc))
                    p_c_fwe = np.empty((S, R))
                    for f in range(n_fam):
                        sel = fam == f
                        p_c_fwe[:, sel] = _holm(p_c[:, sel].ravel()).reshape(S, -1)
            p_g_fdr = np.empty(R)
            for f in range(n_fam):
                sel = fam == f
                p_g_fdr[sel] = fdr_bh(p_g[sel])
            sig_g = np.stack([p_g, p_g_fdr, p_g_fwe]) < alpha                     # (3, R)
            right_g = np.sign(t_obs) == sign_group
            det["group"] += sig_g & right_g & planted_group
            null_g = sig_g & ~planted_group
            any_study = null_g.any(axis=1)
            for f in range(n_fam):
                sel = fam == f
                fp_test["group"][:, f] += null_g[:, sel].sum(1)
                fp_any["group"][:, f] += null_g[:, sel].any(1)
            if S:
                p_c_fdr = np.empty((S, R))
                for f in range(n_fam):
                    sel = fam == f
                    p_c_fdr[:, sel] = fdr_bh(p_c[:, sel].ravel()).reshape(S, -1)
                sig_c = np.stack([p_c, p_c_fdr, p_c_fwe]) < alpha                 # (3, S, R)
                right_c = np.sign(corr_obs) == sign_corr[None, :]
                det["corr"] += sig_c & right_c[None] & planted_corr[None]
                null_c = sig_c & ~planted_corr[None]
                any_study |= null_c.reshape(3, -1).any(axis=1)
                for f in range(n_fam):
                    sel = fam == f
                    fp_test["corr"][:, f] += null_c[:, :, sel].reshape(3, -1).sum(1)
                    fp_any["corr"][:, f] += null_c[:, :, sel].reshape(3, -1).any(1)
            fp_study += any_study
            if progress is not None:
                progress(n, k)
        # ---- power rows
        for j in np.flatnonzero(lay.cols["test_row"].to_numpy() >= 0):
            col = lay.cols.iloc[j]
            trow = tests.loc[col["test_row"]]
            base = {"n_per_group": n, "effect_id": col["effect_id"], "analysis": trow["analysis"],
                    "metric": trow["metric"], "primary": bool(trow["primary"]), "n_sim": int(n_sim)}
            if planted_group[j]:
                pw = det["group"][:, j] / n_sim
                power_rows.append({**base, "contrast": "patient-vs-control", "direction": int(col["direction"]),
                                   "effect_size_type": "cohens_d", "effect_size": col["d"],
                                   "power_uncorrected": pw[0], "power_fdr": pw[1], "power_fwe": pw[2],
                                   "analytic_uncorrected": float(ttest_power(col["d"] * np.sqrt(reliability), n, n, alpha)),
                                   "mc_se": float(np.sqrt(max(pw[2] * (1 - pw[2]), 0.25 / n_sim) / n_sim))})
            for s, score in enumerate(lay.scores):
                if planted_corr[s, j]:
                    pw = det["corr"][:, s, j] / n_sim
                    power_rows.append({**base, "contrast": f"corr-{score}", "direction": int(sign_corr[j]),
                                       "effect_size_type": "pearson_r", "effect_size": col["r"],
                                       "power_uncorrected": pw[0], "power_fdr": pw[1], "power_fwe": pw[2],
                                       "analytic_uncorrected": float(correlation_power(col["r"] * np.sqrt(reliability), n, alpha)),
                                       "mc_se": float(np.sqrt(max(pw[2] * (1 - pw[2]), 0.25 / n_sim) / n_sim))})
        # ---- false-positive rows
        n_null_g = np.array([int((~planted_group[fam == f]).sum()) for f in range(n_fam)])
        n_null_c = np.array([int((~planted_corr[:, fam == f]).sum()) for f in range(n_fam)])
        for f, fname in enumerate(lay.families):
            an, met = fname.split("/")
            for kind, nn in (("group", n_null_g[f]), ("corr", n_null_c[f])):
                if kind == "corr" and not S:
                    continue
                row = {"n_per_group": n, "analysis": an, "metric": met,
                       "contrast": "patient-vs-control" if kind == "group" else "clinical (all scores)",
                       "n_null_tests": int(nn), "n_sim": int(n_sim)}
                for i, c in enumerate(("uncorrected", "fdr", "fwe")):
                    row[f"fpr_{c}"] = fp_test[kind][i, f] / (n_sim * max(nn, 1))
                    row[f"fwer_{c}"] = fp_any[kind][i, f] / n_sim
                fp_rows.append(row)
        total_null = int(n_null_g.sum() + n_null_c.sum() * (1 if S else 0))
        row = {"n_per_group": n, "analysis": "all", "metric": "all", "contrast": "all", "n_null_tests": total_null,
               "n_sim": int(n_sim)}
        for i, c in enumerate(("uncorrected", "fdr", "fwe")):
            tot = fp_test["group"][i].sum() + (fp_test["corr"][i].sum() if S else 0)
            row[f"fpr_{c}"] = tot / (n_sim * max(total_null, 1))
            row[f"fwer_{c}"] = fp_study[i] / n_sim
        fp_rows.append(row)
    return pd.DataFrame(power_rows), pd.DataFrame(fp_rows)
