"""The QC table reader (hfsmri.qc.table.collect) and the outlier flags."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hfsmri.derivatives import Derivatives
from hfsmri.errors import HfsmriError
from hfsmri.qc import record, table


def _ctx(out, sub, ses=None):
    return SimpleNamespace(subject=sub, session=ses, out=out)


def _write(out, sub, ses, modality, **values):
    return record._write(_ctx(out, sub, ses), modality, values, inputs=[], params={"x": 1}, method={}, errors={})


def test_collect_one_row_per_participant_session_modality(tmp_path):
    out = Derivatives(tmp_path)
    _write(out, "02", None, "bold", tsnr=55.0, mean_fd=0.12, scrubbed=0.0, dvars_std=1.1, gcor=0.05)
    _write(out, "01", "post", "T1w", snr_total=12.0, cnr=3.1, t1w_dice=0.97)
    _write(out, "01", "pre", "dwi", b0_snr=30.0, dwi_outlier=0.0)
    _write(out, "01", "pre", "T1w", snr_total=11.0, cnr=2.9, t1w_dice=0.96)
    t = table.collect(tmp_path)
    assert list(t.columns) == list(table.ID_COLUMNS) + list(table.COLUMNS)
    assert list(zip(t.participant_id, t.session, t.modality)) == [
        ("sub-01", "post", "T1w"), ("sub-01", "pre", "T1w"), ("sub-01", "pre", "dwi"), ("sub-02", "n/a", "bold")]
    assert t.loc[3, "tsnr"] == 55.0 and np.isnan(t.loc[3, "snr_total"]) and np.isnan(t.loc[0, "tsnr"])
    assert np.isnan(t.loc[2, "dwi_motion"])  # written as n/a (motion correction off)
    # units and meanings travel with every table
    side = pd.read_json(record.iqm_path(out, "02", None, "bold").with_suffix(".json"), typ="series")
    assert side["mean_fd"]["Units"] == "mm" and "Description" in side["tsnr"]
    # no timings or paths: only the fixed columns
    assert not any("time" in c or "path" in c for c in t.columns)


def test_collect_empty_and_bad_tables(tmp_path):
    assert table.collect(tmp_path).empty
    assert list(table.collect(tmp_path).columns) == list(table.ID_COLUMNS) + list(table.COLUMNS)
    bad = tmp_path / "sub-01" / "anat" / "sub-01_desc-iqm_stats.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("foo\tbar\n1\t2\n")
    with pytest.raises(HfsmriError, match="sub-01_desc-iqm_stats.tsv.*not a QC table"):
        table.collect(tmp_path)


def _group(modality, metric, values, **other):
    rows = []
    for i, v in enumerate(values):
        rows.append({"participant_id": f"sub-{i + 1:02d}", "session": "n/a", "modality": modality, metric: v,
                     **other})
    return pd.DataFrame(rows)


def test_flags_are_direction_aware_with_absolute_bounds():
    # Dice: 0.981 in a tight group is not an outlier; 0.91 passes the 0.90 floor; 0.75 always fails
    dice = _group("T1w", "t1w_dice", [0.975, 0.978, 0.98, 0.981, 0.983, 0.985, 0.979, 0.91, 0.75])
    f = table.flag_outliers(dice)
    assert f["participant_id"].tolist() == ["sub-09"]
    assert "below the limit 0.8" in f["reason"].iloc[0]
    # SNR: low is bad, high is not
    snr = _group("T1w", "snr_total", [12, 12.5, 11.8, 12.2, 11.9, 12.1, 6.0, 20.0])
    f = table.flag_outliers(snr)
    assert f["participant_id"].tolist() == ["sub-07"] and f["robust_z"].iloc[0] < -3.5
    # mean FD: high is bad; 0.15 mm never flagged (<= 0.2 mm), 0.3 mm flagged by robust z, 0.6 always
    fd = _group("bold", "mean_fd", [0.05, 0.06, 0.05, 0.07, 0.06, 0.15, 0.3, 0.6])
    f = table.flag_outliers(fd)
    assert f["participant_id"].tolist() == ["sub-07", "sub-08"]
    assert "above the limit 0.5 mm" in f.loc[f.participant_id == "sub-08", "reason"].iloc[0]
    # a near-constant column: a 3 % difference is no outlier however small the MAD
    ts = _group("bold", "tsnr", [60.0, 60.0, 60.0, 60.0, 60.0, 58.2])
    assert table.flag_outliers(ts).empty
    # too few values for a robust z: only absolute bounds apply
    few = _group("dwi", "dwi_outlier", [0.0, 0.0, 0.3])
    f = table.flag_outliers(few)
    assert f["participant_id"].tolist() == ["sub-03"]
    # per-tissue SNRs and GM Dice are context, never flagged
    ctx = _group("T1w", "gm_dice", [0.7, 0.71, 0.69, 0.7, 0.7, 0.2])
    assert table.flag_outliers(ctx).empty


def test_flags_only_compare_rows_of_the_same_modality():
    t = pd.concat([_group("T1w", "t1w_dice", [0.97] * 6),
                   _group("bold", "tsnr", [50, 52, 49, 51, 50, 20])], ignore_index=True)
    f = table.flag_outliers(t)
    assert f[["modality", "metric"]].drop_duplicates().values.tolist() == [["bold", "tsnr"]]
