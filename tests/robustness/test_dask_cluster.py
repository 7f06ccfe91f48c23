"""A real dask LocalCluster (2 worker processes): participant jobs and group permutations give
results identical to the local run."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from hfsmri.stats import glm
from hfsmri.parallel import client_for
from hfsmri.stats.distributed import permuted_glm
from hfsmri.stats.permutation import make_permutation_set, permutation_blocks

from ._tree import PER_SUBJECT, assert_identical_trees, derivative_files, same_content
from .conftest import run_cli


def test_permutation_blocks_cover_every_row_once():
    X = np.column_stack([np.ones(12), np.r_[np.ones(6), np.zeros(6)]])
    pset = make_permutation_set(X, 50, "permute", random_state=1)
    parts = permutation_blocks(pset, 16)
    assert [p.rows.shape[0] for p in parts] == [17, 17, 17, 3]
    assert all(np.array_equal(p.rows[0], np.arange(12)) for p in parts)
    np.testing.assert_array_equal(np.vstack([p.rows[1:] for p in parts]), pset.rows[1:])


def _problem(one_sample: bool):
    rng = np.random.default_rng(0)
    mask = np.zeros((9, 9, 10), bool)
    mask[1:-1, 1:-1, 1:-1] = True
    n = 14
    if one_sample:
        X = np.column_stack([np.ones(n), rng.normal(size=n)])
        c = [1.0, 0.0]
    else:
        X = np.column_stack([np.ones(n), np.r_[np.ones(7), np.zeros(7)], rng.normal(size=n)])
        c = [0.0, 1.0, 0.0]
    Y = rng.normal(size=(n, int(mask.sum())))
    Y[:7, :150] += 1.0
    return Y, X, c, mask


@pytest.mark.parametrize("one_sample", [False, True], ids=["permute", "signflip"])
def test_distributed_permutations_identical_to_local(cluster, one_sample):
    Y, X, c, mask = _problem(one_sample)
    kw = dict(n_perm=60, tfce=True, mask=mask, random_state=5, cluster_forming_p=0.01, batch_size=8)
    local = glm.permuted_glm(Y, X, c, **kw)
    with client_for(cluster.scheduler_address) as client:
        dist = permuted_glm(Y, X, c, client=client, block_size=16, min_voxels=0, **kw)
    assert dist.settings["distributed_blocks"] == 4 and dist.scheme == local.scheme
    assert dist.n_null == local.n_null == 61
    for key in ("pos", "neg"):
        a, b = local.tail(key), dist.tail(key)
        for name in a.__dataclass_fields__:
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), name
            if x is not None:
                assert np.array_equal(x, y), (key, name)
    assert local.two_sided.keys() == dist.two_sided.keys()
    for name in local.two_sided:
        assert np.array_equal(local.two_sided[name], dist.two_sided[name]), name
    assert np.array_equal(local.t, dist.t)


def test_no_client_is_the_local_function():
    Y, X, c, mask = _problem(False)
    a = glm.permuted_glm(Y, X, c, n_perm=10, tfce=False, mask=mask, random_state=2)
    b = permuted_glm(Y, X, c, n_perm=10, tfce=False, mask=mask, random_state=2)
    assert np.array_equal(a.pos.null_max_t, b.pos.null_max_t) and "distributed_blocks" not in b.settings


@pytest.mark.slow
def test_localcluster_study_identical_to_local_run(func_study, reference_run, cluster, tmp_path):
    """Subjects 01 and 02 run as jobs on the cluster (the other two are copied from the reference
    run to keep the test short); then the group level with the scheduler."""
    bids, study = func_study
    out = tmp_path / "out"
    addr = cluster.scheduler_address
    run_cli(bids, out, "participant", study, "--scheduler", addr, "--participant-label", "01", "02")
    files = [f for f in derivative_files(reference_run, "participant") if f.parts[0] in ("sub-01", "sub-02")]
    assert derivative_files(out, "participant") == files and len(files) == 2 * PER_SUBJECT
    differ = [str(f) for f in files if not same_content(reference_run / f, out / f)]
    assert not differ, differ
    assert "peak memory" in (out / "logs" / "sub-02.log").read_text()
    for sub in ("sub-03", "sub-04"):
        shutil.copytree(reference_run / sub, out / sub)
    run_cli(bids, out, "group", study, "--scheduler", addr)
    assert_identical_trees(reference_run, out, "group")


def test_unreachable_scheduler_is_a_clear_error():
    from hfsmri.errors import HfsmriError
    from hfsmri.parallel import connect

    with pytest.raises(HfsmriError, match=r"--scheduler.*cannot connect to the dask scheduler 'tcp://127.0.0.1:9'"):
        connect("tcp://127.0.0.1:9", timeout=1)
