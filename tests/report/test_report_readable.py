"""Item 6/7 of issue 22: findings table, short QC table, units, ICA order, WM labels, methods text."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hfsmri.report.build import natural_key, qc_short_table, with_units
from hfsmri.report.methods import methods_sections
from hfsmri.report.units import metric_unit

from .conftest import FALSE_CENTER, HIT_CENTER


def test_findings_table_peaks_effect_sizes_and_ground_truth(fake_output):
    out = fake_output["out"]
    f = pd.read_csv(out / "report" / "findings.tsv", sep="\t")
    lt = f[(f.analysis == "vbm") & (f.contrast == "patient-lt-control")].iloc[0]
    gt = f[(f.analysis == "vbm") & (f.contrast == "patient-gt-control")].iloc[0]
    x, y, z = (float(v) for v in lt.peak_mni.strip("()").split(","))
    assert np.allclose([x, y, z], HIT_CENTER, atol=4.5) and lt.peak_label == "Thalamus_L"
    assert lt.ground_truth == "planted" and gt.ground_truth == "not planted"
    assert lt.n_voxels == fake_output["hit_mask"].sum() == 125
    # closed form: Cohen's d = t * sqrt(1/n1 + 1/n2) with 6 patients and 6 controls, t = 6
    assert lt.effect_size == f"d = {6 * math.sqrt(1 / 6 + 1 / 6):.2f}"
    assert np.isclose(lt.p_fwe, 10 ** -2.5, rtol=1e-4)
    # the ROI test of the planted amygdala effect is a finding too
    amy = f[(f.analysis == "roi_volumes") & (f.peak_label == "Amygdala_L")].iloc[0]
    assert amy.ground_truth == "planted" and amy.finding
    html = fake_output["report"].read_text()
    assert "are not corrected for each other" in html.split('id="summary"')[0]


def test_qc_short_table_units_and_image_quality_flags_only():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        pid = f"sub-{i:02d}"
        rows.append({"participant_id": pid, "session": "n/a", "modality": "T1w", "t1w_dice": 0.975 + 0.001 * i,
                     "snr_total": 12 + rng.normal(), "cnr": 3 + 0.1 * rng.normal()})
        rows.append({"participant_id": pid, "session": "n/a", "modality": "bold", "tsnr": 60 + rng.normal(),
                     "mean_fd": 0.8 if i == 3 else 0.1 + 0.01 * i, "scrubbed": 0.02})
    from hfsmri.qc.table import COLUMNS

    t = pd.DataFrame(rows).reindex(columns=["participant_id", "session", "modality", *COLUMNS])
    short, flags, cells = qc_short_table(t)
    assert list(short.columns) == ["participant_id", "T1w→MNI Dice", "T1w SNR", "T1w CNR", "mean FD (mm)",
                                   "scrubbed (%)", "tSNR"]
    assert np.allclose(short["scrubbed (%)"], 2.0)
    assert cells == {(3, "mean FD (mm)")}                       # FD 0.8 mm > 0.5 mm; Dice 0.975-0.984 is not
    assert not any(k in c.lower() for c in short.columns for k in ("time", "cpu", "path", "sec"))


def test_units_and_natural_order():
    assert metric_unit("roi_volumes", "volume") == "ml" and metric_unit("thickness", "thickness") == "mm"
    assert metric_unit("dti", "md") == "mm²/s" and metric_unit("tbss", "fa").startswith("FA (unitless")
    df = with_units(pd.DataFrame({"roi": ["a"], "mean_patient": [1.0], "t": [2.0]}), "ml")
    assert list(df.columns) == ["roi", "mean_patient (ml)", "t"]
    assert sorted(["ic-10", "ic-2", "ic-1"], key=natural_key) == ["ic-1", "ic-2", "ic-10"]


def test_wm_peaks_get_tract_labels():
    from hfsmri.report.figures import peak_labels
    from hfsmri.spatial.atlas import label_at

    pt = np.array([[0.0, -20.0, 24.0]])            # corpus callosum body
    ref = str(label_at("juelich", pt)[0])
    lab = peak_labels(pt, "dwi")[0]
    assert lab.startswith(("WM_", "near WM_"))
    if ref.startswith("WM_"):
        assert lab == ref
    assert peak_labels(pt, "anat")[0] == str(label_at("aal", pt)[0])


def test_methods_text_from_what_ran():
    study = {"analyses": {"vbm": {}, "thickness": {"fwhm": 0.0}, "roi_volumes": {"tiv": "covariate"},
                          "dti": {}, "reho": {}},
             "preprocessing": {"anat": {"brain_extraction": "template"}, "func": {"slice_timing": "auto"}},
             "covariates": ["age"], "stats": {"n_perm": 100}}
    secs, refs = methods_sections(study, list(study["analyses"]), 5, 5,
                                  slice_timing={"not corrected (no SliceTiming)": 10})
    text = " ".join(s["text"] for s in secs)
    assert "(template)" not in text and "'covariate'" not in text and "handled as" not in text
    thick = next(s["text"] for s in secs if s["title"] == "Cortical thickness")
    assert "native T1w space" in thick and "not smoothed" in thick and "in MNI space at" not in thick
    assert any("N4ITK" in r for r in refs) and any("n-tissue segmentation" in r for r in refs)
    assert any("Symmetric diffeomorphic" in r for r in refs)
    not_done = next(s["text"] for s in secs if s["title"] == "Not done")
    assert "no slice-timing correction" in not_done and "distortion" in not_done and "eddy" in not_done
    assert "Slice-timing correction was applied" not in text
    assert "not corrected for each other" in text
    secs2, _ = methods_sections({**study, "analyses": {"thickness": {"fwhm": 4.0}}}, ["thickness"])
    assert "smoothed within the cortex with 4 mm FWHM" in " ".join(s["text"] for s in secs2)
