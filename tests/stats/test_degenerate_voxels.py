"""Voxels constant to the data's precision get t = 0 and p = 1 (and do not break the TFCE null)."""
import numpy as np

from hfsmri.stats.glm import permuted_glm


def test_float32_rounding_noise_is_treated_as_constant():
    rng = np.random.default_rng(0)
    mask = np.zeros((6, 6, 6), bool)
    mask[1:5, 1:5, 1:5] = True
    V = int(mask.sum())
    n = 10
    Y = rng.normal(size=(n, V))
    # a clipped map: 10 mm in every subject, with float32 rounding noise that a permutation can fit exactly
    flat = np.arange(V) < 20
    Y[:, flat] = np.float64(np.float32(10.0))
    Y[:5, flat] = np.nextafter(np.float32(10.0), np.float32(11.0))
    X = np.column_stack([np.ones(n), np.r_[np.ones(5), -np.ones(5)] / 2])
    res = permuted_glm(Y, X, np.array([0.0, 1.0]), n_perm=200, tfce=True, mask=mask, random_state=0)
    assert np.all(res.t[flat] == 0.0)
    assert np.all(res.pos.p_unc[flat] == 1.0) and np.all(res.neg.p_unc[flat] == 1.0)
    # the null maxima stay those of the informative voxels (|t| of noise with 8 df, not ~1e8)
    assert res.pos.null_max_t.max() < 50 and np.isfinite(res.pos.null_max_tfce).all()


def test_voxelwise_clinical_selects_correlation_maps(tmp_path):
    import logging
    from types import SimpleNamespace

    from hfsmri.group.runner import voxelwise_clinical_wanted, voxelwise_designs
    from hfsmri.stats.design import Design, clinical_score_of

    assert voxelwise_clinical_wanted({"voxelwise_clinical": ["severity"]}, "severity")
    assert not voxelwise_clinical_wanted({"voxelwise_clinical": ["severity"]}, "hama")
    assert not voxelwise_clinical_wanted({"voxelwise_clinical": False}, "severity")
    assert voxelwise_clinical_wanted({}, "hama")
    rng = np.random.default_rng(1)
    n = 8
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    subs = [f"{i:02d}" for i in range(n)]
    d = Design(X=X, columns=["intercept", "hama"], subjects=subs,
               contrasts={"corr-hama-pos": np.array([0.0, 1.0]), "corr-hama-neg": np.array([0.0, -1.0])})
    assert clinical_score_of("corr-hama-pos") == "hama" and clinical_score_of("corr-deltahama-neg") == "hama"
    mask = np.ones((4, 4, 4), bool)
    Y = rng.normal(size=(n, 64))
    gctx = SimpleNamespace(log=logging.getLogger("test"))
    run = dict(Y=Y, subjects=subs, mask=mask, affine=np.eye(4), tfce_setting="3d", eng={})
    st = {"n_perm": 10, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 0}
    assert voxelwise_designs(gctx, {"hama": d}, st={**st, "voxelwise_clinical": ["severity"]}, **run) == []
    notes = []    # df = 6 < stats.min_df_correlation (10): ROI only, with a note
    assert voxelwise_designs(gctx, {"hama": d}, st={**st, "voxelwise_clinical": True}, notes=notes, **run) == []
    assert "residual df = 6 < 10" in notes[0]
    st["min_df_correlation"] = 6
    res = voxelwise_designs(gctx, {"hama": d}, st={**st, "voxelwise_clinical": True}, **run)
    assert [r.contrast for r in res] == ["corr-hama-pos", "corr-hama-neg"]
