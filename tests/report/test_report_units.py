"""Units of the report: mask mapping, ROI name matching, demographics, effect sizes, QC flags."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hfsmri.report.build import _effect_sizes, qc_flags, qc_table
from hfsmri.report.demographics import demographics_table
from hfsmri.report.ground_truth import mask_to_grid, region_tokens, roi_matches
from hfsmri.spatial.templates import template_grid


def test_mask_to_grid_same_grid_and_mirror():
    shape, aff = template_grid(2)
    m = np.zeros(shape, bool)
    m[20:25, 50:53, 40:44] = True
    img = nib.Nifti1Image(m.astype(np.uint8), aff)
    assert np.array_equal(mask_to_grid(img, shape, aff), m)
    # the template grid is symmetric about x = 0, so mirroring in world space is a flip of axis 0
    assert np.array_equal(mask_to_grid(img, shape, aff, mirror=True), m[::-1])


def test_mask_to_grid_coarser_grid_keeps_thin_masks():
    from nilearn.image import resample_to_img

    shape1, aff1 = template_grid(1)
    m = np.zeros(shape1, bool)
    m[100:140, 120:121, 80:110] = True          # a 1 mm thick sheet
    img = nib.Nifti1Image(m.astype(np.uint8), aff1)
    shape3, aff3 = template_grid(3)
    ours = mask_to_grid(img, shape3, aff3)
    ref = resample_to_img(img, nib.Nifti1Image(np.zeros(shape3, np.uint8), aff3), interpolation="nearest",
                          force_resample=True, copy_header=True).get_fdata() > 0
    assert (ours >= ref).all()                  # superset of nearest-neighbour resampling
    assert ours.sum() > 0
    # every voxel of ours contains a mask voxel centre within half a voxel (+ half the source voxel)
    ijk = np.argwhere(ours)
    world = (aff3 @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    src = np.argwhere(m)
    src_w = (aff1 @ np.c_[src, np.ones(len(src))].T)[:3].T
    from scipy.spatial import cKDTree

    d, _ = cKDTree(src_w).query(world, p=np.inf)
    assert d.max() <= 1.5 + 0.5 + 1e-6


@pytest.mark.parametrize("roi, region, eid, expected", [
    ("Amygdala_L", "aal:Amygdala_L+aal:Amygdala_R", "gm-amygdala", True),
    ("Left_Amygdala", "aal:Amygdala_L", "gm-amygdala-l", True),
    ("Right_Amygdala", "aal:Amygdala_L", "gm-amygdala-l", False),
    ("Putamen_L", "aal:Amygdala_L", "gm-amygdala-l", False),
    ("dlpfc_R", '[{"sphere": [40, 32, 30], "radius": 12}]', "gm-dlpfc", True),
    ("cc_body", "juelich:WM_Callosal_body", "wm-cc-genu-body", True),
])
def test_roi_name_matching(roi, region, eid, expected):
    assert roi_matches(roi, region_tokens(region, eid)) is expected


def test_demographics_against_closed_forms():
    rng = np.random.default_rng(3)
    n = 40
    df = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(n)],
                       "group": ["HFS"] * 18 + ["HC"] * 22,
                       "age": rng.normal(50, 10, n),
                       "site": rng.choice(["a", "b", "c"], n),
                       "smoker": [1, 0] * 20})
    df.loc[:5, "sex"] = "F"
    df.loc[6:, "sex"] = "M"
    t = demographics_table(df, "group", {"patient": "HFS", "control": "HC"})
    # Welch t-test against pingouin (independent implementation)
    import pingouin as pg

    ref = pg.ttest(df.age[df.group == "HFS"], df.age[df.group == "HC"], correction=True)
    age = t[t.variable == "age"].iloc[0]
    assert np.isclose(age.statistic, ref["T"].iloc[0]) and np.isclose(age.p, ref["p_val" if "p_val" in ref else "p-val"].iloc[0])
    assert np.isclose(age.df, ref["dof"].iloc[0])
    # Pearson chi2 (no continuity correction) by its closed form
    site = t[t.variable == "site"].iloc[0]
    obs = pd.crosstab(df.site, df.group).to_numpy(float)
    exp = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert np.isclose(site.statistic, chi2) and np.isclose(site.p, stats.chi2.sf(chi2, 2))
    assert site.test == "χ²"
    # 0/1 codes are categorical; small 2x2 table -> Fisher exact, odds ratio = ad/bc
    sex = t[t.variable == "sex"].iloc[0]
    assert sex.test.startswith("Fisher")
    a, b = (df.sex[df.group == "HFS"] == "F").sum(), (df.sex[df.group == "HC"] == "F").sum()
    c, d = (df.sex[df.group == "HFS"] == "M").sum(), (df.sex[df.group == "HC"] == "M").sum()
    assert np.isclose(sex.statistic, (a * d) / (b * c)) if b * c else np.isinf(sex.statistic)
    assert (t.variable == "smoker").any() and t[t.variable == "smoker"].iloc[0].level == "0"
    assert t.iloc[0].patient == "18" and t.iloc[0].control == "22"


def test_effect_sizes_against_pingouin():
    import pingouin as pg

    rng = np.random.default_rng(0)
    vals = pd.DataFrame({"roiA": rng.normal(0, 1, 20), "roiB": rng.normal(1, 2, 20)},
                        index=[f"{i:02d}" for i in range(20)])
    roles = pd.Series(["patient"] * 9 + ["control"] * 11, index=vals.index)
    es = _effect_sizes(vals, roles).set_index("roi")
    for col in vals:
        a, b = vals.loc[roles == "patient", col], vals.loc[roles == "control", col]
        assert np.isclose(es.loc[col, "cohens_d"], pg.compute_effsize(a, b, eftype="cohen"))
        assert np.isclose(es.loc[col, "hedges_g"], pg.compute_effsize(a, b, eftype="hedges"), rtol=2e-3)
        assert np.isclose(es.loc[col, "p_uncorrected"], stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_qc_table_and_flags():
    fd = [0.10, 0.12, 0.11, 0.09, 0.10, 0.95]
    summ = [{"subject": f"{i:02d}", "session": None, "flipped": False,
             "stages": {"func": {"mean_fd_mm": v, "motion": {"max_fd": 2 * v}, "n_outlier_volumes": int(i == 2)},
                        "dwi": {"error": "crash"} if i == 1 else {"n_directions": 30}}} for i, v in enumerate(fd)]
    df = qc_table(summ)
    assert {"func.mean_fd_mm", "func.motion.max_fd", "dwi.error", "dwi.n_directions"} <= set(df.columns)
    flags = qc_flags(df)
    med = np.median(fd)
    mad = 1.4826 * np.median(np.abs(np.array(fd) - med))
    expected = {f"sub-{i:02d}" for i, v in enumerate(fd) if abs(v - med) / mad > 3.5}
    got = set(flags.loc[flags.column == "func.mean_fd_mm", "participant_id"])
    assert got == expected == {"sub-05"}
    assert set(flags.loc[flags.column == "dwi.error", "participant_id"]) == {"sub-01"}
    assert set(flags.loc[flags.column == "func.n_outlier_volumes", "participant_id"]) == {"sub-02"}


def test_lateralised_masks_follow_flipping(tmp_path):
    """ipsi/contra masks are written for right-affected patients: as is (flip_to R), mirrored (flip_to
    L), or the simulator's both-sides mask / the union with the mirror (no flipping)."""
    from hfsmri.report.ground_truth import _Masks

    shape, aff = template_grid(2)
    m = np.zeros(shape, bool)
    m[60:63, 50:53, 40:43] = True                # right hemisphere (x > 0)
    nib.save(nib.Nifti1Image(m.astype(np.uint8), aff), tmp_path / "r.nii.gz")
    both = m | m[::-1]
    nib.save(nib.Nifti1Image(both.astype(np.uint8), aff), tmp_path / "lr.nii.gz")
    get = lambda flip, hemi, un=None: _Masks(tmp_path, flip).get("r.nii.gz", hemi, shape, aff, un)  # noqa: E731
    assert np.array_equal(get("R", "ipsi"), m)
    assert np.array_equal(get("L", "ipsi"), m[::-1])
    assert np.array_equal(get(None, "ipsi"), both)
    assert np.array_equal(get(None, "contra", "lr.nii.gz"), both)
    assert np.array_equal(get("L", "R"), m)      # fixed-hemisphere effects are never mirrored
    assert _Masks(tmp_path).get("missing.nii.gz", "L", shape, aff) is None


def test_effect_sizes_of_a_constant_column_are_missing_without_warnings():
    """A column equal up to float rounding in every subject has no effect size (scipy would warn
    about catastrophic cancellation and return noise); the other columns match scipy."""
    import warnings

    import numpy as np
    import pandas as pd
    from scipy import stats

    from hfsmri.report.build import _effect_sizes

    idx = list("abcdef")
    vals = pd.DataFrame({"const": [1.0 + 1e-16 * i for i in range(6)], "x": [1, 2, 3, 4, 5, 7.0]}, index=idx)
    roles = pd.Series(["patient"] * 3 + ["control"] * 3, index=idx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = _effect_sizes(vals, roles).set_index("roi")
    assert np.isnan(r.loc["const", "cohens_d"]) and np.isnan(r.loc["const", "t_welch"])
    ref = stats.ttest_ind([1, 2, 3], [4, 5, 7.0], equal_var=False)
    assert r.loc["x", "t_welch"] == ref.statistic and r.loc["x", "p_uncorrected"] == ref.pvalue


def test_long_roi_tables_show_the_smallest_p_first_and_keep_every_row_in_the_tsv():
    """The HTML shows the HTML_ROI_ROWS rows with the smallest corrected p of a long ROI table (e.g.
    graph metrics over 120 AAL nodes), so the report stays small; short tables keep their order."""
    import numpy as np
    import pandas as pd

    from hfsmri.report.build import HTML_ROI_ROWS, top_rows

    rng = np.random.default_rng(0)
    n = HTML_ROI_ROWS + 37
    df = pd.DataFrame({"roi": [f"r{i}" for i in range(n)], "t": rng.normal(size=n), "p_fdr": rng.uniform(size=n)})
    shown = top_rows(df)
    assert len(shown) == HTML_ROI_ROWS
    assert list(shown["roi"]) == list(df.sort_values("p_fdr")["roi"][:HTML_ROI_ROWS])
    assert top_rows(df.head(5)).equals(df.head(5))
    es = pd.DataFrame({"roi": [f"r{i}" for i in range(n)], "hedges_g": rng.normal(size=n)})
    assert list(top_rows(es)["roi"]) == list(es.reindex(es["hedges_g"].abs().sort_values(ascending=False).index)["roi"][:HTML_ROI_ROWS])
