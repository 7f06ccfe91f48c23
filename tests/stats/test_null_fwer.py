"""Mini null simulation: family-wise error of voxel-, TFCE- and cluster-FWE stays near alpha."""
import numpy as np
import pytest

from hfsmri.stats.glm import permuted_glm

from .conftest import smooth_maps


@pytest.mark.slow
def test_null_family_wise_error_rate():
    shape = (9, 9, 8)
    mask = np.ones(shape, bool)
    n_studies, n = 100, 16
    g = np.r_[np.ones(8), np.zeros(8)]
    X = np.column_stack([g, 1 - g])
    hits = np.zeros(3)
    for s in range(n_studies):
        Y = smooth_maps(n, shape, fwhm_vox=2.5, seed=1000 + s).reshape(n, -1)
        r = permuted_glm(Y, X, [1.0, -1.0], n_perm=49, tfce=True, mask=mask, random_state=s,
                         cluster_forming_p=0.01)
        hits += [r.pos.p_fwe_t.min() <= 0.05, r.pos.p_fwe_tfce.min() <= 0.05, r.pos.p_fwe_extent.min() <= 0.05]
    rate = hits / n_studies
    # binomial(100, 0.05): sd 0.022; a valid test stays inside [0.005, 0.12]
    assert np.all(rate <= 0.12), rate
    assert np.all(rate >= 0.005), rate
