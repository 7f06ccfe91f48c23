"""Per-job memory: the estimate and the measured peak are logged; the peak is per job."""
from __future__ import annotations

import re

import nibabel as nib
import numpy as np

from hfsmri.parallel import Job, run_jobs


def _allocate(mb):
    a = np.ones(int(mb * 2 ** 20 / 8))
    return float(a.sum())


def test_peak_is_measured_per_job_in_one_process(tmp_path):
    jobs = [Job("big", _allocate, (400,), mem_mb=500), Job("small", _allocate, (1,), mem_mb=50)]
    big, small = run_jobs(jobs, nprocs=1, log_dir=tmp_path, progress=False)
    assert big.ok and small.ok
    assert big.peak_mb - small.peak_mb > 300  # the 400 MB array counts for the first job only
    assert big.mem_mb == 500 and small.mem_mb == 50
    text = (tmp_path / "big.log").read_text()
    assert "memory estimate 500 MB" in text
    peak = float(re.search(r"peak memory (\d+) MB, estimate 500 MB", text).group(1))
    assert abs(peak - big.peak_mb) <= 1


def test_participant_logs_estimate_and_peak(func_study, reference_run):
    bids, _ = func_study
    bold = nib.load(str(bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"))
    expected = 1500.0 + 6 * 8 * int(np.prod(bold.shape)) / 1e6  # pipeline.estimate_job_mb's rule
    text = (reference_run / "logs" / "sub-01.log").read_text()
    m = re.search(r"done in [\d.]+ s \(peak memory (\d+) MB, estimate (\d+) MB\)", text)
    assert m, text[-2000:]
    assert int(m.group(2)) == round(expected)
    assert 50 < int(m.group(1)) < expected  # measured peak is real and under the (conservative) estimate
