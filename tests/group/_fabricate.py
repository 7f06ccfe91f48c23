"""A fixed small study for the group-level regression guard, with fabricated participant outputs.

The guard must not depend on the participant-level algorithms (other work changes them), so the
participant derivatives are not computed: they are written directly, seeded and plausible, with
planted group differences, under the names the participant stages write. The names are asked from
the package's own path helpers (``hfsmri.func.participant.metric_path``, ``hfsmri.dwi.participant
.map_path``, ``hfsmri.conn.participant.seed_map_path`` / ``conn_path`` / ``input_paths``, the
structural stage's output table), so a rename there follows here. Only the group level is run on
them (:func:`run_variant`).

Variants (:data:`VARIANTS`):

* ``cross`` — cross-sectional, no flipping; ``preprocessing.func.exclude_high_motion`` on with one
  control above the mean-FD limit (the functional analyses leave it out);
* ``longitudinal`` — sessions ``pre``/``post`` (every subject scanned twice; patients' planted
  effects halve after surgery; per-session severity in ``sub-X_sessions.tsv``); voxel-wise
  clinical maps off (``stats.voxelwise_clinical: false``; ``cross`` has them) to keep it fast;
* ``flipped`` — cross-sectional with ``flip_to: R``: left-affected patients' structural and
  diffusion maps are written already mirrored (as the participant stages write them), their
  functional and connectivity outputs in the native orientation (the group level mirrors them).

Grid: the MNI template grid at :data:`RES` mm; 6 patients + 5 controls; every analysis of the
pipeline with small settings (20 permutations, 3 ICA components, 2 seeds, 8 graph nodes).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

RES = 8
N_PAT, N_CON = 6, 5
T_BOLD = 24
SEEDS = ["amygdalaR", "thalamusL"]
NODES = {"Amygdala_L": (-24, -2, -18), "Amygdala_R": (24, -2, -18), "Insula_L": (-36, 6, 2),
         "Insula_R": (36, 6, 2), "Precentral_L": (-38, -20, 52), "Precentral_R": (38, -20, 52),
         "Thalamus_L": (-10, -18, 8), "Thalamus_R": (10, -18, 8)}
THICKNESS_REGIONS = ["Left_Precentral_Gyrus", "Right_Precentral_Gyrus", "Left_Superior_Parietal_Lobule",
                     "Right_Superior_Parietal_Lobule", "Left_Frontal_Pole", "Right_Frontal_Pole", "Left_Thalamus"]
VOLUME_REGIONS = ["Thalamus_L", "Thalamus_R", "Putamen_L", "Putamen_R", "Amygdala_L", "Amygdala_R",
                  "aal_Precentral_L", "aal_Precentral_R", "aal_Vermis_10"]
TRACTS = ["ILF_L", "ILF_R", "SLF_L", "SLF_R", "CC_genu", "CC_body", "CC_whole"]
ICA_NETWORKS = {"motor": "aal:Precentral_L+aal:Precentral_R", "precuneus": "aal:Precuneus_L+aal:Precuneus_R",
                "visual": "aal:Calcarine_L+aal:Calcarine_R"}
VARIANTS = ("cross", "longitudinal", "flipped")


def study_config(variant: str) -> dict:
    """study.yaml of a variant (every analysis, small settings)."""
    cfg = {
        "group_column": "group", "groups": {"patient": "HFS", "control": "HC"},
        "covariates": ["age"], "clinical": ["severity"], "affected_side_column": "affected_side",
        "flip_to": "R" if variant == "flipped" else None,
        "analyses": {"vbm": {"resolution": RES}, "thickness": {"resolution": RES}, "roi_volumes": {},
                     "dti": {"resolution": RES}, "tbss": {}, "dwi_rois": {}, "reho": {}, "alff": {}, "dc": {},
                     "vmhc": {}, "seed_fc": {"seeds": list(SEEDS)},
                     "ica": {"n_components": 3, "n_init": 1}, "graph": {"atlas": "aal", "nbs_threshold": 2.0}},
        "preprocessing": {"func": {"resolution": RES, "exclude_high_motion": variant == "cross"}},
        "stats": {"n_perm": 20, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.01, "random_seed": 0,
                  # keep the voxel-wise correlation maps (df 2-3 here) and the fast ROI tests in the guard
                  "min_df_correlation": 0, "roi_n_perm": 20},
    }
    if variant == "longitudinal":   # voxel-wise clinical maps are covered by ``cross``; ROI ones stay
        cfg["sessions"] = ["pre", "post"]
        cfg["stats"]["voxelwise_clinical"] = False
    return cfg


def _labels():
    return [f"{i + 1:02d}" for i in range(N_PAT + N_CON)]


def write_bids(root: Path, variant: str, rng) -> Path:
    """participants.tsv (+ session folders and sessions.tsv for the longitudinal variant)."""
    bids = root / "bids"
    bids.mkdir(parents=True, exist_ok=True)
    rows = ["participant_id\tgroup\tage\tsex\taffected_side\tseverity"]
    for i, lab in enumerate(_labels()):
        pat = i < N_PAT
        side = "LR"[i % 2] if pat else "n/a"
        sev = f"{int(rng.integers(1, 5))}" if pat else "n/a"
        rows.append(f"sub-{lab}\t{'HFS' if pat else 'HC'}\t{35 + 3 * i + int(rng.integers(0, 3))}\t"
                    f"{'MF'[i % 2]}\t{side}\t{sev}")
        if variant == "longitudinal":
            for ses in ("pre", "post"):
                (bids / f"sub-{lab}" / f"ses-{ses}").mkdir(parents=True, exist_ok=True)
            if pat:
                a = int(rng.integers(2, 5))
                (bids / f"sub-{lab}" / f"sub-{lab}_sessions.tsv").write_text(
                    f"session_id\tseverity\nses-pre\t{a}\nses-post\t{max(0, a - int(rng.integers(0, 3)))}\n")
    (bids / "participants.tsv").write_text("\n".join(rows) + "\n")
    return bids


class _Fab:
    """Writes one subject/session's participant outputs."""

    def __init__(self, study, out, rng):
        from hfsmri.spatial.atlas import region_mask
        from hfsmri.spatial.templates import load_template

        self.study, self.out, self.rng = study, out, rng
        self.ref = load_template("mask", RES)
        self.aff = self.ref.affine
        self.mask = np.asarray(self.ref.dataobj) > 0
        self.gm = load_template("GM", RES).get_fdata()
        self.wm = load_template("WM", RES).get_fdata()
        self.region = {k: region_mask(v, self.ref) & self.mask for k, v in {
            "effect": "aal:Precentral_R+aal:Postcentral_R+aal:Parietal_Sup_R",
            "insula": "aal:Insula_R+aal:Insula_L", "smg": "aal:SupraMarginal_L+aal:SupraMarginal_R",
            **ICA_NETWORKS}.items()}

    # -- helpers
    def _smooth_noise(self, sigma=1.0):
        return ndimage.gaussian_filter(self.rng.standard_normal(self.mask.shape), sigma)

    def _img(self, arr, dtype=np.float32):
        return nib.Nifti1Image(np.asarray(arr).astype(dtype), self.aff)

    def _native(self, arr, sub):
        """Functional outputs are written unflipped: mirror a flipped subject's aligned array back."""
        return np.flip(arr, axis=0).copy() if self.study.flipped(sub) else arr

    # -- anat
    def anat(self, sub, ses, effect):
        from hfsmri.anat.participant import _outputs

        ctx = SimpleNamespace(out=self.out, subject=sub, session=ses, flip=self.study.flipped(sub),
                              analyses={k: self.study.analyses[k] for k in ("vbm", "thickness", "roi_volumes")})
        o = {k: v[0] for k, v in _outputs(ctx, {}, RES, {}).items()}
        tiv = 1450.0 + 120.0 * self.rng.standard_normal()
        self.out.save_tsv(pd.DataFrame([{"participant_id": f"sub-{sub}", "tiv_ml": tiv, "gm_ml": 0.45 * tiv}]),
                          o["tissue"])
        gm = self.gm * (1.0 + 0.06 * self._smooth_noise()) * (tiv / 1450.0)
        gm[self.region["effect"]] *= 1.0 - 0.25 * effect
        self.out.save_nifti(self._img(np.clip(gm, 0, None) * self.mask), o["vbm_modulated"])
        th = np.where(self.gm >= 0.3, 2.5 + 0.15 * self._smooth_noise(), 0.0)
        th[self.region["effect"] & (self.gm >= 0.3)] -= 0.5 * effect
        th[tuple(self.rng.integers(0, s) for s in th.shape)] = 0.0     # one uncovered voxel per subject
        self.out.save_nifti(self._img(np.clip(th, 0, None)), o["thickness_mni"])
        tt = pd.DataFrame({"atlas": "harvard_oxford", "region": THICKNESS_REGIONS,
                           "thickness_mm": 2.5 + 0.1 * self.rng.standard_normal(len(THICKNESS_REGIONS))})
        tt.loc[1, "thickness_mm"] -= 0.3 * effect                     # Right_Precentral_Gyrus thinner
        self.out.save_tsv(tt, o["thickness_table"])
        vol = pd.DataFrame({"region": VOLUME_REGIONS, "volume_ml": np.abs(
            5.0 + 0.5 * self.rng.standard_normal(len(VOLUME_REGIONS)))})
        vol.loc[1, "volume_ml"] -= 1.0 * effect                        # Thalamus_R smaller
        vol.loc[len(VOLUME_REGIONS) - 1, "volume_ml"] = 0.0 if sub == "03" else 0.2   # a region lost by one subject
        self.out.save_tsv(vol, o["roi_volumes"])

    # -- dwi
    def dwi(self, sub, ses, effect):
        from hfsmri.dwi.participant import METRICS, map_path, mask_path, stats_path

        fa = np.clip(0.12 + 0.6 * self.wm + 0.03 * self._smooth_noise(), 0.0, 1.0)
        fa[self.region["effect"]] *= 1.0 - 0.2 * effect
        md = 7e-4 + 1e-4 * (1 - self.wm) + 2e-5 * self._smooth_noise()
        md[self.region["effect"]] *= 1.0 + 0.15 * effect
        ad = md * (1.0 + fa)
        rd = (3 * md - ad) / 2
        maps = {"fa": fa, "md": md, "ad": ad, "rd": rd}
        for m in METRICS:
            self.out.save_nifti(self._img(np.where(self.mask, maps[m], 0.0)), map_path(self.out, sub, ses, m, RES))
        self.out.save_nifti(self._img(self.mask, np.uint8), mask_path(self.out, sub, ses, RES))
        tab = pd.DataFrame({"roi": TRACTS})
        for m in METRICS:
            base = {"fa": 0.45, "md": 7.5e-4, "ad": 1.1e-3, "rd": 5.5e-4}[m]
            v = base * (1.0 + 0.05 * self.rng.standard_normal(len(TRACTS)))
            v[4] *= 1.0 - (0.15 if m == "fa" else -0.1) * effect       # CC_genu
            tab[m] = v
        self.out.save_tsv(tab, stats_path(self.out, sub, ses, RES))

    # -- func
    def func(self, sub, ses, effect, mean_fd):
        from hfsmri.analyses import ANALYSES
        from hfsmri.func.participant import METRICS, metric_path, qc_path

        group_desc = ANALYSES["reho"].metrics[0].map.entities["desc"]   # the version the group level reads

        qc = {"participant_id": f"sub-{sub}", "session": ses or "n/a", "mean_fd": mean_fd,
              "max_fd": 3 * mean_fd, "high_motion": mean_fd > 0.2}
        self.out.save_tsv(pd.DataFrame([qc]), qc_path(self.out, sub, ses))
        for analysis in ("reho", "alff", "dc", "vmhc"):
            for suffix in METRICS[analysis]:
                z = self._smooth_noise(1.0) * 2.0
                z[self.region["effect"]] -= 1.2 * effect
                z = np.where(self.mask, self._native(z, sub), 0.0)
                self.out.save_nifti(self._img(z), metric_path(self.out, sub, ses, suffix, RES, group_desc))

    # -- conn
    def conn(self, sub, ses, effect):
        from hfsmri.conn.participant import conn_path, input_paths, seed_map_path
        from hfsmri.conn.seeds import aligned_name, resolve_seeds
        from hfsmri.graph.metrics import GLOBAL_COLUMNS, NODAL_COLUMNS

        bold_p, mask_p = input_paths(self.out, sub, ses, RES)
        data = self.rng.standard_normal(self.mask.shape + (T_BOLD,)).astype(np.float32)
        for k in ICA_NETWORKS:
            tc = self.rng.standard_normal(T_BOLD).astype(np.float32)
            amp = 2.0 * (1.0 + 0.5 * effect) if k == "motor" else 2.0
            data[self.region[k]] += amp * tc
        data *= self.mask[..., None]
        if self.study.flipped(sub):
            data = np.flip(data, axis=0).copy()
        self.out.save_nifti(self._img(data), bold_p)
        self.out.save_nifti(self._img(self.mask, np.uint8), mask_p)
        flip_to = self.study.flip_to
        for seed in resolve_seeds(SEEDS, {}):
            name = aligned_name(seed, flip_to)
            z = 0.2 + 0.1 * self._smooth_noise(0.7)
            z[self.region["insula"] | self.region["smg"]] += 0.3 * effect
            z = np.where(self.mask, self._native(z, sub), 0.0)
            self.out.save_nifti(self._img(z), seed_map_path(self.out, sub, ses, RES, name))
            zs = ndimage.gaussian_filter(z, 1.0) * self.mask
            self.out.save_nifti(self._img(zs), seed_map_path(self.out, sub, ses, RES, name, smooth=True))
        names = list(NODES)
        g = pd.Series({c: 0.5 + 0.1 * self.rng.standard_normal() for c in GLOBAL_COLUMNS})
        g["global_efficiency"] += 0.1 * effect
        nd = pd.DataFrame(self.rng.normal(5.0, 1.0, (len(names), len(NODAL_COLUMNS))), index=names,
                          columns=list(NODAL_COLUMNS))
        nd.loc["Amygdala_R", "degree"] += 2.0 * effect
        if self.study.flipped(sub):   # native orientation: the affected (aligned R) node is the native L one
            nd.index = [n[:-1] + {"L": "R", "R": "L"}[n[-1]] for n in nd.index]
            nd = nd.loc[names]
        self.out.save_tsv(g.to_frame().T, conn_path(self.out, sub, ses, "aal", "pearson", "graphauc"))
        self.out.save_tsv(nd.rename_axis("node").reset_index(),
                          conn_path(self.out, sub, ses, "aal", "pearson", "graphnodalauc"))
        zm = self.rng.normal(0.3, 0.1, (len(names), len(names)))
        zm = np.triu(zm, 1) + np.triu(zm, 1).T
        zm[0, 2] = zm[2, 0] = zm[0, 2] + 0.3 * effect
        self.out.save_tsv(pd.DataFrame(zm, index=names, columns=names),
                          conn_path(self.out, sub, ses, "aal", "pearson", "relmat"), index=True)
        self.out.save_tsv(pd.DataFrame(self.rng.standard_normal((5, len(names))), columns=names),
                          conn_path(self.out, sub, ses, "aal", "pearson", "timeseries"),
                          sidecar={"NodeCoordinatesMNI": [list(NODES[n]) for n in names]})


def fabricate(root: Path, variant: str, seed: int = 21):
    """Write the variant's BIDS stub and participant derivatives under ``root``; returns
    ``(study, Derivatives)``."""
    from hfsmri.derivatives import Derivatives
    from hfsmri.study import Study

    rng = np.random.default_rng([seed, VARIANTS.index(variant)])
    bids = write_bids(root, variant, rng)
    study = Study.from_bids(bids, study_config(variant))
    out = Derivatives(root / "out")
    fab = _Fab(study, out, rng)
    sessions = study.sessions or [None]
    for i, sub in enumerate(study.labels):
        patient = study.group_of(sub) == "patient"
        for k, ses in enumerate(sessions):
            effect = (1.0 if k == 0 else 0.5) if patient else 0.0
            mean_fd = 0.35 if (variant == "cross" and sub == _labels()[-1]) else 0.08 + 0.01 * i
            fab.anat(sub, ses, effect)
            fab.dwi(sub, ses, effect)
            fab.func(sub, ses, effect, mean_fd)
            fab.conn(sub, ses, effect)
    return study, out


def run_variant(root: Path, variant: str) -> Path:
    """Fabricate the participant outputs and run the group level; returns ``OUTPUT_DIR/group``.

    BLAS runs on one thread: the group ICA's FastICA/PCA results differ in the last bits with the
    BLAS thread count (measured: only the ``ica/`` outputs change), so the guard fixes it.
    """
    from threadpoolctl import threadpool_limits

    from hfsmri.pipeline import RunOptions, run_group_level

    study, out = fabricate(root, variant)
    logging.getLogger("hfsmri").setLevel(logging.WARNING)
    (root / "work").mkdir(parents=True, exist_ok=True)
    with threadpool_limits(1):
        run_group_level(study, out, RunOptions(nprocs=1, work_dir=root / "work"))
    return out.root / "group"


def _digest_image(path: Path) -> str:
    img = nib.load(str(path))
    data = np.ascontiguousarray(np.asanyarray(img.dataobj))
    h = hashlib.sha256()
    h.update(f"{data.dtype.str}{data.shape}".encode())
    h.update(data.tobytes())
    h.update(np.ascontiguousarray(img.affine, dtype=np.float64).tobytes())
    return h.hexdigest()[:20]


def checksums(group_dir: Path) -> dict:
    """``{relative path: digest}`` of every map (decoded array + affine) and TSV (text) under
    ``group_dir``; JSON sidecars / summaries and hidden files are left out."""
    out = {}
    for f in sorted(Path(group_dir).rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        rel = str(f.relative_to(group_dir))
        if f.name.endswith((".nii", ".nii.gz")):
            out[rel] = _digest_image(f)
        elif f.name.endswith(".tsv"):
            out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()[:20]
    return out
