"""End to end on a small simulated MNI-space cohort: planted FA decrease in the genu/body of the
corpus callosum and FA increase in the SLF are found by the ROI analysis and by TBSS, with the
right signs; nothing is found in an untouched tract."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from hfsmri.dwi.tbss import tbss
from hfsmri.dwi.tracts import roi_means, tract_masks
from hfsmri.spatial.templates import load_template


@pytest.mark.slow
def test_planted_cc_and_slf_effects_found_by_rois_and_tbss():
    rng = np.random.default_rng(7)
    res = 2
    mask_img = load_template("mask", res)
    brain = np.asarray(mask_img.dataobj) > 0
    wm = np.asarray(load_template("WM", res).dataobj, dtype=float)
    base_fa = np.where(brain, 0.1 + 0.65 * ndimage.gaussian_filter(wm, 0.7) ** 1.5, 0.0)
    masks = tract_masks(mask_img, names={"ccGenu", "ccBody", "ccSplenium", "slfL", "slfR", "cstL"})
    cc_gb = masks["ccGenu"] | masks["ccBody"]
    slf = masks["slfL"] | masks["slfR"]
    n_pat, n_con = 10, 10
    fa, md = [], []
    for s in range(n_pat + n_con):
        f = base_fa * (1 + 0.03 * ndimage.gaussian_filter(rng.normal(size=brain.shape), 1.0) / 0.2)
        if s < n_pat:
            f = f - 0.06 * cc_gb + 0.06 * slf
        f = np.where(brain, np.clip(f, 0.01, 0.95), 0.0)
        fa.append(f)
        md.append(np.where(brain, 1e-3 * (1.2 - 0.5 * f), 0.0))  # MD falls where FA rises
    fa, md = np.array(fa), np.array(md)
    group = np.r_[np.ones(n_pat), np.zeros(n_con)].astype(bool)

    # ROI analysis
    tvals = {}
    for roi in ("ccGenu", "ccBody", "slfL", "slfR", "ccSplenium", "cstL"):
        vals = np.array([roi_means({"fa": fa[s], "md": md[s]}, {roi: masks[roi]}).loc[roi, "fa"]
                         for s in range(len(fa))])
        tvals[roi] = stats.ttest_ind(vals[group], vals[~group])
    for roi in ("ccGenu", "ccBody"):
        assert tvals[roi].statistic < 0 and tvals[roi].pvalue < 0.001, roi
    for roi in ("slfL", "slfR"):
        assert tvals[roi].statistic > 0 and tvals[roi].pvalue < 0.001, roi
    for roi in ("ccSplenium", "cstL"):
        assert tvals[roi].pvalue > 0.01, roi

    # TBSS: skeleton t-values in the planted regions have the planted signs
    result = tbss(fa, {"md": md}, threshold=0.2, voxel_size=(res,) * 3)
    sk = result.skeleton
    assert sk.n_voxels > 1000
    t_fa = stats.ttest_ind(result.values["fa"][group], result.values["fa"][~group]).statistic
    t_md = stats.ttest_ind(result.values["md"][group], result.values["md"][~group]).statistic
    in_cc = cc_gb.ravel()[sk.indices]
    dil_slf = ndimage.binary_dilation(slf, iterations=1).ravel()[sk.indices]
    assert in_cc.sum() > 20 and dil_slf.sum() > 5
    assert np.median(t_fa[in_cc]) < -3 and np.median(t_md[in_cc]) > 3
    assert np.median(t_fa[dil_slf & ~in_cc]) > 2
    far = ~ndimage.binary_dilation(cc_gb | slf, iterations=4).ravel()[sk.indices]
    assert np.abs(np.median(t_fa[far])) < 0.5
