"""The virtual cohort: participants, clinical scores and each subject's individual brain maps.

Participants (``participants.tsv``): patients (group ``HFS``) and controls (``HC``) matched in age
(N(55, 10) years, clipped 35-80) and sex (~60 % women). Patients: affected side L for
round(0.6 n) of them (shuffled), Cohen spasm grade 1-4 (P = .15/.35/.35/.15), disease duration
(months, log-normal, median 30, 3-240), HAMA/HAMD (mean 14/12, SD 5, mildly correlated with grade);
controls: grade 0, duration n/a, HAMA/HAMD mean 5/4. Sites: balanced within each group.
With sessions, later sessions (post-MVD) get lower grade and anxiety scores (``sub-*_sessions.tsv``).

Each subject's *noise-free metric maps* are drawn here in MNI space (2 mm grid): for every planted
quantity (gm, lperp, lpar, reho, alff) a unit-variance smooth random field ``Z`` (FWHM 12 mm,
between-subject variability; 10 % of its variance is re-drawn per session as test-retest change)
plus, for patients, the planted effects (see :mod:`hfsmri.simulate.effects`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from .effects import Effect, EffectSet, effect_mask, quantity_shift
from .fields import FWHM_TO_SIGMA

SUBJECT_FWHM_MM = 12.0
RETEST_VARIANCE = 0.10
QUANTITIES = ("gm", "lperp", "lpar", "reho", "alff")
GROUP_LABELS = {"patient": "HFS", "control": "HC"}


def make_participants(n_patients: int, n_controls: int, rng: np.random.Generator, n_sites: int = 1) -> pd.DataFrame:
    """participants.tsv content (see module doc); index = participant label without ``sub-``."""
    n = n_patients + n_controls
    width = max(2, len(str(n)))
    labels = [f"{i + 1:0{width}d}" for i in range(n)]
    group = ["HFS"] * n_patients + ["HC"] * n_controls
    age = np.clip(np.round(rng.normal(55, 10, n)), 35, 80).astype(int)
    sex = np.where(rng.random(n) < 0.6, "F", "M")
    side = np.array(["n/a"] * n, dtype=object)
    n_left = int(round(0.6 * n_patients))
    sides = np.array(["L"] * n_left + ["R"] * (n_patients - n_left), dtype=object)
    rng.shuffle(sides)
    side[:n_patients] = sides
    severity = np.zeros(n, dtype=int)
    severity[:n_patients] = rng.choice([1, 2, 3, 4], size=n_patients, p=[0.15, 0.35, 0.35, 0.15])
    duration = np.array(["n/a"] * n, dtype=object)
    dur = np.clip(np.round(np.exp(rng.normal(np.log(30), 0.8, n_patients))), 3, 240).astype(int)
    duration[:n_patients] = dur
    sev_z = (severity[:n_patients] - 2.5) / 0.95
    hama = np.empty(n)
    hamd = np.empty(n)
    hama[:n_patients] = 14 + 5 * (0.3 * sev_z + np.sqrt(1 - 0.09) * rng.standard_normal(n_patients))
    hamd[:n_patients] = 12 + 5 * (0.3 * sev_z + np.sqrt(1 - 0.09) * rng.standard_normal(n_patients))
    hama[n_patients:] = rng.normal(5, 3, n_controls)
    hamd[n_patients:] = rng.normal(4, 3, n_controls)
    hama = np.clip(np.round(hama), 0, 56).astype(int)
    hamd = np.clip(np.round(hamd), 0, 52).astype(int)
    site = np.empty(n, dtype=object)
    for start, count in ((0, n_patients), (n_patients, n_controls)):
        order = rng.permutation(count)
        site[start:start + count] = [f"site{(k % max(1, n_sites)) + 1}" for k in order]
    df = pd.DataFrame({"participant_id": [f"sub-{x}" for x in labels], "group": group, "age": age,
                       "sex": sex, "affected_side": side, "severity": severity, "duration_months": duration,
                       "hama": hama, "hamd": hamd, "site": site}, index=labels)
    return df


def session_scores(participants: pd.DataFrame, sessions: list, rng: np.random.Generator) -> dict:
    """Per-subject sessions tables: the first session repeats participants.tsv scores; later
    (post-MVD) sessions of patients have the grade lowered by 1-3 (min 0) and HAMA/HAMD by ~40 %."""
    out = {}
    for label, row in participants.iterrows():
        rows = []
        for k, ses in enumerate(sessions):
            sev, hama, hamd = int(row["severity"]), int(row["hama"]), int(row["hamd"])
            if k > 0 and row["group"] == "HFS":
                sev = max(0, sev - int(rng.integers(1, 4)))
                hama = int(round(hama * 0.6))
                hamd = int(round(hamd * 0.6))
            rows.append({"session_id": f"ses-{ses}", "severity": sev, "hama": hama, "hamd": hamd})
        out[label] = pd.DataFrame(rows)
    return out


def clinical_z(participants: pd.DataFrame) -> pd.DataFrame:
    """z-scores of the clinical scores among patients (0 for controls / missing)."""
    pat = participants["group"] == "HFS"
    out = pd.DataFrame(0.0, index=participants.index, columns=["severity", "duration_months", "hama", "hamd"])
    for col in out.columns:
        v = pd.to_numeric(participants.loc[pat, col], errors="coerce").astype(float)
        sd = v.std(ddof=0)
        if np.isfinite(sd) and sd > 0:
            out.loc[pat, col] = ((v - v.mean()) / sd).fillna(0.0).values
    return out


@dataclass
class EffectWeight:
    """Soft weight (0..1) of one effect on the 2 mm MNI grid, cropped to its bounding box, for a
    patient affected on the right (``r``) and on the left (``l``, mirrored) — identical unless the
    effect is ipsi/contra."""

    r: tuple
    l: tuple
    mask_r: np.ndarray
    mask_l: np.ndarray


def _crop(w: np.ndarray):
    nz = np.nonzero(w > 1e-3)
    if not nz[0].size:
        return (tuple(slice(0, 0) for _ in range(3)), w[:0, :0, :0])
    sl = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nz)
    return sl, np.ascontiguousarray(w[sl]).astype(np.float32)


def effect_weights(effects: EffectSet, ref_img: nib.Nifti1Image, edge_fwhm_mm: float = 4.0) -> dict:
    """``{effect_id: EffectWeight}``; soft edges by Gaussian smoothing of the binary mask."""
    from hfsmri.spatial.flip import flip_array_x

    res = abs(ref_img.affine[0, 0])
    sig = edge_fwhm_mm * FWHM_TO_SIGMA / res
    out = {}
    for e in effects.effects:
        m = effect_mask(e, ref_img)
        w = np.clip(ndimage.gaussian_filter(m.astype(np.float32), sig) * 1.5, 0, 1) * (
            ndimage.binary_dilation(m, iterations=1))
        w = np.maximum(w, m.astype(np.float32))
        if e.lateralised:
            ml = flip_array_x(m, ref_img.affine)
            wl = flip_array_x(w, ref_img.affine)
        else:
            ml, wl = m, w
        out[e.id] = EffectWeight(_crop(w), _crop(wl), m, ml)
    return out


@dataclass
class SubjectPlan:
    """Everything that defines one simulated subject (independent of modality)."""

    label: str
    index: int
    patient: bool
    side: str | None
    site: str
    clinical: dict = field(default_factory=dict)
    sex: str | None = None
    age: float | None = None

    def rng(self, seed: int, *extra: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), 7919, self.index, *[int(x) for x in extra]])


def session_factor(effects: EffectSet, session_index: int) -> float:
    return 1.0 if session_index == 0 else float(effects.post_factor)


def _unit_field(rng, shape, sigma_vox):
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="reflect")
    f -= f.mean()
    f /= f.std() + 1e-12
    return f


def quantity_z(plan: SubjectPlan, quantity: str, session_index: int, effects: EffectSet, weights: dict,
               shape, res_mm: float, seed: int) -> np.ndarray:
    """The subject's standardised deviation map ``Z`` (MNI grid ``shape``) for one quantity.

    ``Z = sqrt(1-v) F_subject + sqrt(v) F_session`` (v = test-retest variance share, only with
    several sessions i.e. session_index given as >= 0 with retest) then, for patients, in every
    effect region of this quantity: ``Z += w * (direction * shift * k + r * c + (sqrt(1-r^2) - 1) * F)``.
    """
    code = QUANTITIES.index(quantity) + 1
    sigma_vox = SUBJECT_FWHM_MM * FWHM_TO_SIGMA / res_mm
    base = _unit_field(plan.rng(seed, 100 + code), shape, sigma_vox)
    if session_index > 0:
        retest = _unit_field(plan.rng(seed, 100 + code, 1000 + session_index), shape, sigma_vox)
        base = np.sqrt(1 - RETEST_VARIANCE) * base + np.sqrt(RETEST_VARIANCE) * retest
    z = base.copy()
    if not plan.patient:
        return z
    k = session_factor(effects, session_index)
    for e in effects.of_quantity(quantity):
        ew = weights[e.id]
        sl, w = ew.l if (e.lateralised and plan.side == "L") else ew.r
        if w.size == 0:
            continue
        shift = e.q_direction * quantity_shift(e, effects.sigma) * k
        term = shift
        if e.clinical_score:
            r = e.q_clinical_r
            term = shift + r * plan.clinical.get(e.clinical_score, 0.0) + (np.sqrt(1 - r * r) - 1.0) * base[sl]
        z[sl] += w * term
    return z


def fc_couplings(plan: SubjectPlan, session_index: int, effects: EffectSet, seed: int) -> dict:
    """Per effect: the subject's coupling deviation (SD units) target <- seed (fc effects)."""
    out = {}
    rng = plan.rng(seed, 200)
    k = session_factor(effects, session_index)
    fcs = effects.of_quantity("fc")
    z = rng.standard_normal(len(fcs))
    if session_index > 0:
        z = np.sqrt(1 - RETEST_VARIANCE) * z + np.sqrt(RETEST_VARIANCE) * plan.rng(seed, 200, session_index).standard_normal(len(fcs))
    for e, zi in zip(fcs, z):
        val = float(zi)
        if plan.patient:
            if e.clinical_score:
                r = e.q_clinical_r
                val = r * plan.clinical.get(e.clinical_score, 0.0) + np.sqrt(1 - r * r) * val
            val += e.q_direction * quantity_shift(e, effects.sigma) * k
        out[e.id] = val
    return out


def effect_side_weight(e: Effect, ew: EffectWeight, plan: SubjectPlan):
    return ew.l if (e.lateralised and plan.side == "L") else ew.r
