"""``simulate_study``: write a raw BIDS dataset of a virtual HFS study plus its ground truth."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import multiprocessing as mp
import nibabel as nib
import numpy as np

from hfsmri import __version__
from hfsmri.errors import HfsmriError

from .anatomy import MniMap
from .cohort import (SubjectPlan, clinical_z, effect_weights, fc_couplings, make_participants, quantity_z,
                     session_factor, session_scores)
from .effects import EffectSet, load_effects, quantity_shift
from .ground_truth import write_ground_truth, write_subjects_table

log = logging.getLogger("hfsmri.simulate")

MODALITIES = ("anat", "dwi", "func")
DEMO_RESOLUTION = {"anat": 2.0, "dwi": 2.5, "func": 3.0}
#: default BOLD length: 240 volumes at TR 2 s = 8 min, a typical resting-state run
DEFAULT_VOLUMES = 240
#: the demo's BOLD length (4 min): halves the fMRI participant stage, fMRI effects are weaker
DEMO_VOLUMES = 120
GENERATED_BY = {"Name": "hfsmri simulate", "Version": __version__,
                "Description": "virtual hemifacial-spasm cohort with planted effects"}
SITE_EFFECTS = {  # per site index (cycled): T1 GM/WM contrast, diffusivity scale, BOLD noise, DWI SNR
    0: {"contrast": 1.00, "diffusivity": 1.00, "bold_noise": 1.0, "snr": 25.0},
    1: {"contrast": 0.90, "diffusivity": 1.05, "bold_noise": 1.3, "snr": 20.0},
    2: {"contrast": 1.08, "diffusivity": 0.96, "bold_noise": 0.8, "snr": 30.0},
}


@dataclass
class _Settings:
    root: Path
    seed: int
    res: dict
    n_dirs: int
    n_volumes: int
    deform: bool
    modalities: tuple
    sessions: list | None
    site_effects: bool
    n_sites: int
    scanner: object = None   # scanner.ScannerSpec


_STATE: dict = {}  # filled before forking workers (read-only in the workers)


def _bids_name(label, ses, *parts):
    base = f"sub-{label}" + (f"_ses-{ses}" if ses else "")
    return "_".join([base, *parts])


def _save(data, affine, path: Path, xyzt_units=("mm", "sec"), tr=None):
    img = nib.Nifti1Image(np.asfortranarray(data), affine)  # F order: nibabel writes it without copies
    img.header.set_xyzt_units(*xyzt_units)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if tr is not None:
        zooms = list(img.header.get_zooms())
        zooms[3] = tr
        img.header.set_zooms(zooms)
    tmp = path.with_name(path.name.replace(".nii.gz", ".tmp.nii.gz"))
    nib.save(img, tmp)
    os.replace(tmp, path)


def _pe_direction(affine) -> str:
    """BIDS PhaseEncodingDirection of the simulated EPI on its stored axes: phase encoded along the
    anatomical A-P axis towards posterior ("j-" on the old RAS/LAS grids); the sign flips when the
    stored axis closest to A-P points posterior (LPS, LPI)."""
    a = np.asarray(affine)[:3, :3]
    cos = a / np.linalg.norm(a, axis=0)
    j = int(np.argmax(np.abs(cos[1])))
    axis = "ijk"[j]
    return axis + ("-" if cos[1, j] > 0 else "")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _site_params(plan: SubjectPlan, settings: _Settings) -> dict:
    if not settings.site_effects:
        return SITE_EFFECTS[0]
    k = int(plan.site.replace("site", "")) - 1
    return SITE_EFFECTS[k % len(SITE_EFFECTS)]


def _simulate_one(task) -> dict:
    """Simulate all modalities of one subject/session (runs in a worker)."""
    from .deformation import HEAD_SCALE, SubjectTransform

    plan, ses_index = task
    st = _STATE
    settings: _Settings = st["settings"]
    effects: EffectSet = st["effects"]
    weights = st["weights"]
    ref = st["ref"]
    ses = settings.sessions[ses_index] if settings.sessions else None
    sdir = settings.root / f"sub-{plan.label}" / (f"ses-{ses}" if ses else "")
    site = _site_params(plan, settings)
    t0 = time.perf_counter()
    # subject-level anatomy: size + nonlinear shape (same in every session); pose per session/modality
    anat_rng = plan.rng(settings.seed, 1)
    shape_tf = SubjectTransform.random(anat_rng, deform=settings.deform,
                                       scale_mean=HEAD_SCALE.get(plan.sex, HEAD_SCALE[None]))
    if not settings.deform:
        shape_tf = SubjectTransform.identity()

    spec = settings.scanner
    ses_pose = None
    if settings.deform and spec.head_pose == "realistic":
        from .scanner import session_pose

        ses_pose = session_pose(spec, plan.rng(settings.seed, 3, ses_index))

    def pose(mod_code):
        if not settings.deform:
            return SubjectTransform.identity()
        r = plan.rng(settings.seed, 2, ses_index, mod_code)
        if ses_pose is not None:
            from .scanner import scan_pose

            rot, trans = scan_pose(*ses_pose, r)
            return SubjectTransform(rot, trans, shape_tf.scale, shape_tf.disp, shape_tf.grid)
        p = SubjectTransform.random(r, deform=False)
        return SubjectTransform(p.rotation, p.translation, shape_tf.scale, shape_tf.disp, shape_tf.grid)

    def acquisition(modality, mod_code, tf):
        from .bold import TR
        from .scanner import draw_acquisition

        return draw_acquisition(spec, modality, settings.res[modality], tf,
                                plan.rng(settings.seed, 4, ses_index, mod_code), tr=TR)

    head = None
    if spec.full_head:
        from .head import HeadParams

        head = HeadParams.random(plan.rng(settings.seed, 5), plan.sex, plan.age)

    def zmap(q):
        return MniMap(quantity_z(plan, q, ses_index, effects, weights, ref.shape, 2.0, settings.seed), ref.affine)

    row = {"participant_id": f"sub-{plan.label}", "session": ses or "n/a",
           "group": "HFS" if plan.patient else "HC", "affected_side": plan.side or "n/a"}
    row.update({k: v for k, v in shape_tf.as_dict().items() if k in ("scale", "deform_rms_mm")})
    if head is not None:
        row.update(head.as_dict())

    def describe(prefix, tf, acq):
        row.update({prefix + k: v for k, v in tf.as_dict().items() if k.startswith(("rot", "trans"))})
        row.update({prefix + k: v for k, v in acq.describe().items()})
    if "anat" in settings.modalities:
        from .t1w import simulate_t1w

        rng = plan.rng(settings.seed, 10, ses_index)
        tf = pose(1)
        acq = acquisition("anat", 1, tf)
        data, affine, info = simulate_t1w(tf, zmap("gm"), effects.sigma["gm"], rng,
                                          resolution_mm=settings.res["anat"], contrast=site["contrast"],
                                          acq=acq, head=head)
        d = sdir / "anat"
        d.mkdir(parents=True, exist_ok=True)
        _save(data, affine, d / (_bids_name(plan.label, ses, "T1w") + ".nii.gz"))
        meta = {"Modality": "MR", "MagneticFieldStrength": 3, "Manufacturer": "hfsmri simulator",
                "MRAcquisitionType": "3D", "RepetitionTime": 2.3, "EchoTime": 0.00298,
                "InversionTime": 0.9, "FlipAngle": 9}
        if not acq.legacy:
            meta["SliceThickness"] = float(acq.zooms[2])
        _write_json(d / (_bids_name(plan.label, ses, "T1w") + ".json"), meta)
        bias = info.pop("bias_field", None)
        if bias is not None:  # ground truth: the multiplicative bias field on a 4x coarser grid
            gdir = settings.root / "derivatives" / "ground_truth" / f"sub-{plan.label}" / (f"ses-{ses}" if ses else "") / "anat"
            gdir.mkdir(parents=True, exist_ok=True)
            _save(bias[0].astype(np.float32), bias[1], gdir / (_bids_name(plan.label, ses, "desc-bias", "T1w") + ".nii.gz"))
        describe("t1w_", tf, acq)
        row.update(info)
    if "dwi" in settings.modalities:
        from .dwi import simulate_dwi

        rng = plan.rng(settings.seed, 20, ses_index)
        tf = pose(2)
        acq = acquisition("dwi", 2, tf)
        data, affine, bvals, bvecs, info = simulate_dwi(
            tf, zmap("lperp"), zmap("lpar"), effects.sigma["lperp"], effects.sigma["lpar"], rng,
            resolution_mm=settings.res["dwi"], n_dirs=settings.n_dirs, snr=site["snr"],
            diffusivity_scale=site["diffusivity"], acq=acq, head=head)
        d = sdir / "dwi"
        d.mkdir(parents=True, exist_ok=True)
        stem = _bids_name(plan.label, ses, "dwi")
        _save(data, affine, d / (stem + ".nii.gz"))
        (d / (stem + ".bval")).write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
        (d / (stem + ".bvec")).write_text("\n".join(" ".join(f"{v:.6f}" for v in bvecs[:, k]) for k in range(3)) + "\n")
        _write_json(d / (stem + ".json"),
                    {"Modality": "MR", "MagneticFieldStrength": 3, "Manufacturer": "hfsmri simulator",
                     "RepetitionTime": 8.0, "EchoTime": 0.089, "PhaseEncodingDirection": _pe_direction(affine),
                     "TotalReadoutTime": 0.05, "NumberOfDirections": int(settings.n_dirs),
                     "BValue": 1000, "NumberOfB0": info["n_b0"]})
        describe("dwi_", tf, acq)
    if "func" in settings.modalities:
        from .bold import TR, simulate_bold

        rng = plan.rng(settings.seed, 30, ses_index)
        couplings = fc_couplings(plan, ses_index, effects, settings.seed)
        tf = pose(3)
        acq = acquisition("func", 3, tf)
        data, affine, conf, info = simulate_bold(
            tf, zmap("reho"), zmap("alff"), couplings,
            {k: v["L" if plan.side == "L" else "R"] for k, v in st["fc_targets"].items()}, effects.sigma, rng,
            resolution_mm=settings.res["func"], n_volumes=settings.n_volumes, noise_scale=site["bold_noise"],
            acq=acq, head=head)
        d = sdir / "func"
        d.mkdir(parents=True, exist_ok=True)
        stem = _bids_name(plan.label, ses, "task-rest", "bold")
        _save(data, affine, d / (stem + ".nii.gz"), tr=TR)
        meta = {"Modality": "MR", "MagneticFieldStrength": 3, "Manufacturer": "hfsmri simulator",
                "TaskName": "rest", "RepetitionTime": TR, "EchoTime": 0.03, "FlipAngle": 90,
                "PhaseEncodingDirection": _pe_direction(affine)}
        if acq.slice_timing:  # only when the signal really carries the slice offsets
            meta["SliceTiming"] = list(acq.slice_timing)
            meta["SliceEncodingDirection"] = "k"
        _write_json(d / (stem + ".json"), meta)
        describe("bold_", tf, acq)
        gdir = settings.root / "derivatives" / "ground_truth" / f"sub-{plan.label}" / (f"ses-{ses}" if ses else "") / "func"
        gdir.mkdir(parents=True, exist_ok=True)
        conf.to_csv(gdir / (_bids_name(plan.label, ses, "task-rest", "desc-confounds_timeseries") + ".tsv"),
                    sep="\t", index=False, float_format="%.6g")
        row["mean_fd_mm"] = info["mean_fd_mm"]
        for eid, c in couplings.items():
            row[f"coupling-{eid}"] = c
    k = session_factor(effects, ses_index)
    for e in effects.effects:
        if e.quantity == "fc":
            continue
        val = 0.0
        if plan.patient:
            val = e.direction * quantity_shift(e, effects.sigma) * k
            if e.clinical_score:
                val += e.clinical_r * plan.clinical.get(e.clinical_score, 0.0)
        row[f"effect-{e.id}"] = val
    # wall time is logged, not stored: the ground truth must be a pure function of the arguments
    log.debug("simulated sub-%s%s in %.1f s", plan.label, f" ses-{ses}" if ses else "", time.perf_counter() - t0)
    return row


def _check_out_dir(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise HfsmriError("output exists and is not a directory", path=root)
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        return
    desc = root / "dataset_description.json"
    ours = False
    if desc.is_file():
        try:
            gb = json.loads(desc.read_text()).get("GeneratedBy") or []
            ours = any(str(g.get("Name", "")).startswith("hfsmri simulate") for g in gb)
        except (ValueError, AttributeError):
            ours = False
    if not ours:
        raise HfsmriError("output directory is not empty and is not a dataset made by 'hfsmri simulate'; "
                          "refusing to overwrite", path=root)
    for p in entries:  # re-simulation: remove the previous dataset completely
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def resolve_resolution(resolution) -> dict:
    """Per-modality voxel size (mm): demo defaults (T1w 2, DWI 2.5, BOLD 3) or one isotropic size."""
    if resolution is None:
        return dict(DEMO_RESOLUTION)
    try:
        r = float(resolution)
    except (TypeError, ValueError):
        raise HfsmriError(f"resolution must be a number of mm, got {resolution!r}", field="resolution") from None
    if not (0.8 <= r <= 6.0):
        raise HfsmriError(f"resolution must be between 0.8 and 6 mm, got {r}", field="resolution")
    return {m: r for m in MODALITIES}


def simulate_study(out_dir, n_patients: int = 15, n_controls: int = 15, seed: int = 0, sessions=None,
                   effects="default", resolution=None, n_dirs: int = 30, n_volumes: int | None = None,
                   deform: bool = True, modalities=("anat", "dwi", "func"), n_sites: int = 1,
                   site_effects: bool = False, n_jobs: int | None = None, scanner="ideal") -> Path:
    """Simulate a case-control HFS study as a raw BIDS dataset with ground truth.

    Parameters
    ----------
    out_dir : path
        Dataset root to create (must be empty/missing, or a previous simulator output, which is
        replaced).
    n_patients, n_controls : int
        Group sizes (patients ``HFS``, controls ``HC`` in participants.tsv column ``group``).
    seed : int
        Everything is a deterministic function of the arguments and ``seed``.
    sessions : list of str, optional
        Session labels, e.g. ``["pre", "post"]``; later sessions carry ``post_factor`` of the
        effects (post-MVD). None = cross-sectional (no ``ses-`` level).
    effects : "default" | "none" | path to YAML | dict | EffectSet
        Planted effects (see :func:`load_effects`).
    resolution : float, optional
        Isotropic native voxel size (mm) of every modality; None = demo sizes T1w 2 mm, DWI
        2.5 mm, BOLD 3 mm.
    n_dirs : int
        Diffusion directions at b = 1000 (plus ``1 + n_dirs // 10`` b0 volumes).
    n_volumes : int, optional
        BOLD volumes at TR 2 s (default :data:`DEFAULT_VOLUMES` = 240 = 8 min; the demo uses
        :data:`DEMO_VOLUMES` = 120).
    deform : bool
        Per-subject head size, pose and nonlinear deformation; False = every subject in exact MNI
        position (fast, exact unit tests).
    modalities : subset of ("anat", "dwi", "func")
    n_sites : int
        Number of sites (balanced within groups; participants.tsv column ``site``).
    site_effects : bool
        Scanner differences between sites (T1w contrast, DWI SNR and diffusivity scale, BOLD noise).
    n_jobs : int, optional
        Worker processes (default: up to 2 available cores; 1 = in-process).
    scanner : "ideal" | "realistic" | dict | ScannerSpec
        How the scanner acquires and stores the images (see :mod:`hfsmri.simulate.scanner`):
        ``ideal`` (default; the idealised axis-aligned grids of the unit tests) or ``realistic``
        (full head with face and neck, realistic head pose, oblique headers up to 15°, sagittal /
        coronal / axial and LPS / RAS storage, anisotropic voxels, uint8 / int16 / uint16 / float32
        T1w, ±20 % bias field, BOLD slice timing). A dict ``{"preset": ..., <option>: value}``
        overrides single options (``full_head``, ``head_pose``, ``oblique_deg``, ``anisotropy``,
        ``t1w_orientation``, ``epi_orientation``, ``t1w_dtype``, ``bias``, ``slice_timing``).

    Returns
    -------
    pathlib.Path of the dataset root.
    """
    t_start = time.perf_counter()
    root = Path(out_dir)
    if int(n_patients) < 0 or int(n_controls) < 0 or int(n_patients) + int(n_controls) == 0:
        raise HfsmriError(f"need at least one subject, got n_patients={n_patients}, n_controls={n_controls}",
                          field="n_patients")
    mods = tuple(modalities)
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods:
        raise HfsmriError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(mods)}", field="modalities")
    if sessions is not None:
        sessions = [str(s).replace("ses-", "") for s in sessions]
        if not sessions or any(not s.isalnum() for s in sessions) or len(set(sessions)) != len(sessions):
            raise HfsmriError(f"sessions must be distinct alphanumeric labels, got {sessions}", field="sessions")
    n_dirs = int(n_dirs)
    if n_dirs < 6 or n_dirs > 300:
        raise HfsmriError(f"n_dirs must be between 6 and 300, got {n_dirs}", field="n_dirs")
    n_vol = DEFAULT_VOLUMES if n_volumes is None else int(n_volumes)
    if n_vol < 20:
        raise HfsmriError(f"n_volumes must be at least 20, got {n_vol}", field="n_volumes")
    if int(n_sites) < 1:
        raise HfsmriError(f"n_sites must be >= 1, got {n_sites}", field="n_sites")
    res = resolve_resolution(resolution)
    from .scanner import resolve_scanner

    spec = resolve_scanner(scanner)
    eff = load_effects(effects)
    _check_out_dir(root)
    root.mkdir(parents=True, exist_ok=True)

    from hfsmri.spatial.templates import template_grid

    shape, affine = template_grid(2)
    ref = nib.Nifti1Image(np.zeros(shape, np.uint8), affine)
    rng = np.random.default_rng([int(seed), 17])
    participants = make_participants(int(n_patients), int(n_controls), rng, int(n_sites))
    cz = clinical_z(participants)
    weights = effect_weights(eff, ref)
    fc_targets = {}
    for e in eff.of_quantity("fc"):
        from .effects import resolve_region

        seed_mask = resolve_region(e.seed_region, ref).astype(np.float32)
        ew = weights[e.id]
        fc_targets[e.id] = {"R": (MniMap(seed_mask, affine), MniMap(ew.mask_r.astype(np.float32), affine)),
                            "L": (MniMap(seed_mask, affine), MniMap(ew.mask_l.astype(np.float32), affine))}

    settings = _Settings(root, int(seed), res, n_dirs, n_vol, bool(deform), mods, sessions, bool(site_effects),
                         int(n_sites), spec)
    plans = []
    for i, (label, prow) in enumerate(participants.iterrows()):
        side = prow["affected_side"] if prow["affected_side"] in ("L", "R") else None
        plans.append(SubjectPlan(label, i, prow["group"] == "HFS", side, prow["site"], cz.loc[label].to_dict(),
                                 sex=prow["sex"] if prow["sex"] in ("F", "M") else None, age=float(prow["age"])))
    tasks = [(p, k) for p in plans for k in range(len(sessions) if sessions else 1)]

    # warm caches before forking so workers share them
    from .anatomy import bold_regions, fibre_field, prefiltered, tissue_maps

    if "anat" in mods:
        tissue_maps(1 if res["anat"] < 1.5 else 2)
        prefiltered(1 if res["anat"] < 1.5 else 2, float(res["anat"]))
    if "dwi" in mods:
        prefiltered(2, float(res["dwi"]))
        fibre_field(2)
    if "func" in mods:
        prefiltered(2, float(res["func"]))
        bold_regions(2)
    for e in eff.effects:
        quantity_shift(e, eff.sigma)

    _STATE.clear()
    _STATE.update({"settings": settings, "effects": eff, "weights": weights, "ref": ref, "fc_targets": fc_targets})
    if n_jobs is None:
        try:
            avail = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            avail = os.cpu_count() or 1
        n_jobs = max(1, min(2, avail))
    n_jobs = max(1, min(int(n_jobs), len(tasks)))
    log.info("simulating %d subject-sessions (%s) with %d worker(s)", len(tasks), ",".join(mods), n_jobs)
    if n_jobs == 1 or "fork" not in mp.get_all_start_methods():
        rows = [_simulate_one(t) for t in tasks]
    else:
        with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("fork")) as pool:
            rows = list(pool.map(_simulate_one, tasks))
    _STATE.clear()

    # dataset-level files
    desc = {"Name": "hfsmri simulated hemifacial spasm study", "BIDSVersion": "1.8.0", "DatasetType": "raw",
            "License": "CC0", "Authors": ["hfsmri simulator"], "GeneratedBy": [GENERATED_BY],
            "HowToAcknowledge": "Simulated data; no real participants."}
    _write_json(root / "dataset_description.json", desc)
    participants.to_csv(root / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    _write_json(root / "participants.json", {
        "group": {"Description": "HFS = hemifacial spasm patient, HC = healthy control",
                  "Levels": {"HFS": "patient", "HC": "control"}},
        "age": {"Description": "age at scan", "Units": "years"},
        "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
        "affected_side": {"Description": "side of the spasm (patients)", "Levels": {"L": "left", "R": "right"}},
        "severity": {"Description": "Cohen spasm grade 0-4 (controls 0)"},
        "duration_months": {"Description": "disease duration", "Units": "months"},
        "hama": {"Description": "Hamilton Anxiety Rating Scale"},
        "hamd": {"Description": "Hamilton Depression Rating Scale"},
        "site": {"Description": "acquisition site"}})
    if sessions:
        ses_tables = session_scores(participants, sessions, np.random.default_rng([int(seed), 18]))
        for label, df in ses_tables.items():
            df.to_csv(root / f"sub-{label}" / f"sub-{label}_sessions.tsv", sep="\t", index=False)
    (root / "README").write_text(
        "Simulated hemifacial spasm (HFS) case-control study written by `hfsmri simulate`.\n"
        f"Patients: {n_patients}, controls: {n_controls}, sessions: {sessions or 'none'}, seed: {seed}, "
        f"effects: {eff.name} ({len(eff)} planted).\n"
        "Ground truth (planted effects, masks, per-subject values) is in derivatives/ground_truth/.\n"
        "No real participants; images are synthetic.\n")
    (root / ".bidsignore").write_text("derivatives/\n")
    gen = dict(GENERATED_BY)
    gen["Parameters"] = {"n_patients": int(n_patients), "n_controls": int(n_controls), "seed": int(seed),
                         "sessions": sessions, "effects": eff.name, "resolution_mm": res, "n_dirs": n_dirs,
                         "n_volumes": n_vol, "deform": bool(deform), "modalities": list(mods),
                         "n_sites": int(n_sites), "site_effects": bool(site_effects),
                         "scanner": spec.as_dict()}
    write_ground_truth(root, eff, weights, ref, gen)
    write_subjects_table(root, rows)
    log.info("simulated %s in %.1f s", root, time.perf_counter() - t_start)
    return root
