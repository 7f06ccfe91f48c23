"""Methods boilerplate (as fMRIPrep's): versions, parameters and citations of every step that ran.

:func:`methods_sections` turns the resolved study (``study.resolved.yaml``) and the list of analyses
that produced group results into paragraphs ready to paste into a paper; citations are numbered in
order of first use and listed by :func:`references`. Parameters come from the resolved study, so
the text always matches what was run (the defaults live in :mod:`hfsmri.analyses`).
"""
from __future__ import annotations

import platform
from importlib import metadata

from ..analyses import ANALYSES, DTI_ANALYSIS
from ..analyses import fmt_param as _fmt

REFERENCES = {
    "hfsmri": "hfsmri: one-command MRI analysis of clinical case-control studies. Software, version {version}.",
    "nilearn": "Abraham A, et al. Machine learning for neuroimaging with scikit-learn. Front Neuroinform. 2014;8:14.",
    "dipy": "Garyfallidis E, et al. Dipy, a library for the analysis of diffusion MRI data. Front Neuroinform. "
            "2014;8:8.",
    "ants": "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration with "
            "cross-correlation. Med Image Anal. 2008;12(1):26-41.",
    "antspy": "Tustison NJ, et al. The ANTsX ecosystem for quantitative biological and medical imaging. "
              "Sci Rep. 2021;11:9068.",
    "numpy": "Harris CR, et al. Array programming with NumPy. Nature. 2020;585:357-362.",
    "scipy": "Virtanen P, et al. SciPy 1.0: fundamental algorithms for scientific computing in Python. "
             "Nat Methods. 2020;17:261-272.",
    "mni2009": "Fonov VS, Evans AC, McKinstry RC, Almli CR, Collins DL. Unbiased nonlinear average "
               "age-appropriate brain templates from birth to adulthood. NeuroImage. 2009;47:S102.",
    "vbm_ashburner": "Ashburner J, Friston KJ. Voxel-based morphometry - the methods. NeuroImage. "
                     "2000;11(6):805-821.",
    "vbm_good": "Good CD, et al. A voxel-based morphometric study of ageing in 465 normal adult human brains. "
                "NeuroImage. 2001;14(1):21-36.",
    "n4": "Tustison NJ, Avants BB, Cook PA, et al. N4ITK: improved N3 bias correction. IEEE Trans Med Imaging. "
          "2010;29(6):1310-1320.",
    "atropos": "Avants BB, Tustison NJ, Wu J, Cook PA, Gee JC. An open source multivariate framework for n-tissue "
               "segmentation with evaluation on public data. Neuroinformatics. 2011;9(4):381-400.",
    "laplace": "Jones SE, Buchbinder BR, Aharon I. Three-dimensional mapping of cortical thickness using "
               "Laplace's equation. Hum Brain Mapp. 2000;11(1):12-32.",
    "direct": "Das SR, Avants BB, Grossman M, Gee JC. Registration based cortical thickness measurement. "
              "NeuroImage. 2009;45(3):867-879.",
    "basser": "Basser PJ, Mattiello J, LeBihan D. MR diffusion tensor spectroscopy and imaging. Biophys J. "
              "1994;66(1):259-267.",
    "wls": "Chung S, Lu Y, Henry RG. Comparison of bootstrap approaches for estimation of uncertainties of DTI "
           "parameters. NeuroImage. 2006;33(2):531-541.",
    "smith2006": "Smith SM, et al. Tract-based spatial statistics: voxelwise analysis of multi-subject diffusion "
            "data. NeuroImage. 2006;31(4):1487-1505.",
    "juelich": "Eickhoff SB, et al. A new SPM toolbox for combining probabilistic cytoarchitectonic maps and "
               "functional imaging data. NeuroImage. 2005;25(4):1325-1335.",
    "witelson": "Witelson SF. Hand and sex differences in the isthmus and genu of the human corpus callosum. "
                "Brain. 1989;112(3):799-835.",
    "zang2004": "Zang Y, Jiang T, Lu Y, He Y, Tian L. Regional homogeneity approach to fMRI data analysis. "
            "NeuroImage. 2004;22(1):394-400.",
    "zang2007": "Zang YF, et al. Altered baseline brain activity in children with ADHD revealed by resting-state "
            "functional MRI. Brain Dev. 2007;29(2):83-91.",
    "falff": "Zou QH, et al. An improved approach to detection of amplitude of low-frequency fluctuation "
             "(ALFF) for resting-state fMRI: fractional ALFF. J Neurosci Methods. 2008;172(1):137-141.",
    "zuo2012": "Zuo XN, et al. Network centrality in the human functional connectome. Cereb Cortex. "
          "2012;22(8):1862-1875.",
    "zuo2010": "Zuo XN, et al. Growing together and growing apart: regional and sex differences in the lifespan "
            "developmental trajectories of functional homotopy. J Neurosci. 2010;30(45):15034-15043.",
    "biswal": "Biswal B, Yetkin FZ, Haughton VM, Hyde JS. Functional connectivity in the motor cortex of "
              "resting human brain using echo-planar MRI. Magn Reson Med. 1995;34(4):537-541.",
    "dimartino": "Di Martino A, et al. Functional connectivity of human striatum: a resting state fMRI study. "
                 "Cereb Cortex. 2008;18(12):2735-2747.",
    "power2012": "Power JD, Barnes KA, Snyder AZ, Schlaggar BL, Petersen SE. Spurious but systematic "
                 "correlations in functional connectivity MRI networks arise from subject motion. NeuroImage. "
                 "2012;59(3):2142-2154.",
    "calhoun2001": "Calhoun VD, Adali T, Pearlson GD, Pekar JJ. A method for making group inferences from functional "
           "MRI data using independent component analysis. Hum Brain Mapp. 2001;14(3):140-151.",
    "fastica": "Hyvärinen A. Fast and robust fixed-point algorithms for independent component analysis. "
               "IEEE Trans Neural Netw. 1999;10(3):626-634.",
    "dualreg": "Nickerson LD, Smith SM, Öngür D, Beckmann CF. Using dual regression to investigate network "
               "shape and amplitude in functional connectivity analyses. Front Neurosci. 2017;11:115.",
    "rubinov2010": "Rubinov M, Sporns O. Complex network measures of brain connectivity: uses and interpretations. "
             "NeuroImage. 2010;52(3):1059-1069.",
    "smallworld": "Humphries MD, Gurney K. Network 'small-world-ness': a quantitative method for determining "
                  "canonical network equivalence. PLoS One. 2008;3(4):e0002051.",
    "maslov": "Maslov S, Sneppen K. Specificity and stability in topology of protein networks. Science. "
              "2002;296(5569):910-913.",
    "nbs": "Zalesky A, Fornito A, Bullmore ET. Network-based statistic: identifying differences in brain "
           "networks. NeuroImage. 2010;53(4):1197-1207.",
    "networkx": "Hagberg AA, Schult DA, Swart PJ. Exploring network structure, dynamics, and function using "
                "NetworkX. Proc 7th Python in Science Conf (SciPy2008). 2008:11-15.",
    "winkler": "Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE. Permutation inference for the "
               "general linear model. NeuroImage. 2014;92:381-397.",
    "freedman": "Freedman D, Lane D. A nonstochastic interpretation of reported significance levels. J Bus "
                "Econ Stat. 1983;1(4):292-298.",
    "tfce": "Smith SM, Nichols TE. Threshold-free cluster enhancement: addressing problems of smoothing, "
            "threshold dependence and localisation in cluster inference. NeuroImage. 2009;44(1):83-98.",
    "bh": "Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and powerful approach "
          "to multiple testing. J R Stat Soc B. 1995;57(1):289-300.",
    "aal": "Rolls ET, Joliot M, Tzourio-Mazoyer N. Implementation of a new parcellation of the orbitofrontal "
           "cortex in the automated anatomical labeling atlas. NeuroImage. 2015;122:1-5.",
    "ho": "Makris N, et al. Decreased volume of left and total anterior insular lobule in schizophrenia. "
          "Schizophr Res. 2006;83(2-3):155-171.",
    "reuter": "Reuter M, Fischl B. Avoiding asymmetry-induced bias in longitudinal image processing. "
              "NeuroImage. 2011;57(1):19-21.",
    "combat": "Fortin JP, et al. Harmonization of cortical thickness measurements across scanners and sites. "
              "NeuroImage. 2018;167:104-120.",
}

SOFTWARE = ("numpy", "scipy", "pandas", "nibabel", "nilearn", "dipy", "antspyx", "scikit-learn", "networkx",
            "numba", "statsmodels", "matplotlib", "jinja2")


def versions() -> dict:
    """Versions of Python, hfsmri and its scientific dependencies ("not installed" if absent)."""
    out = {"python": platform.python_version()}
    for pkg in ("hfsmri",) + SOFTWARE:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class _Cite:
    """Numbers citations in order of first use."""

    def __init__(self):
        self.order: list[str] = []

    def __call__(self, *keys) -> str:
        nums = []
        for k in keys:
            if k not in REFERENCES:
                continue
            if k not in self.order:
                self.order.append(k)
            nums.append(self.order.index(k) + 1)
        return "[" + ", ".join(str(n) for n in nums) + "]" if nums else ""


def _analysis_text(name: str, p: dict, pre: dict, c: _Cite, covars: list) -> str | None:
    """The analysis' methods sentence (:attr:`hfsmri.analyses.AnalysisSpec.methods`)."""
    spec = ANALYSES.get(name)
    return spec.methods(p.get, pre, c) if spec is not None else None


def methods_sections(study: dict, analyses, n_patients=None, n_controls=None, excluded=None,
                     flipped=None, simulated: bool = False, qc_sentence: str | None = None,
                     slice_timing: dict | None = None) -> tuple[list[dict], list[str]]:
    """Methods paragraphs and the numbered reference list.

    Parameters
    ----------
    study : resolved study (``study.resolved.yaml`` as a dict; may be empty).
    analyses : names of the analyses whose results are reported (keys of ``study["analyses"]``).
    n_patients, n_controls, excluded, flipped : participant counts, ``{label: reason}``, flipped labels.
    simulated : the data come from ``hfsmri simulate``.
    qc_sentence : the QC rules and counts (:meth:`hfsmri.qc.decisions.QcDecisions.sentence`), if any.
    slice_timing : what happened to slice timing, counted over the BOLD runs (the participant
        summaries' ``func.slice_timing`` labels -> number of runs), if known.

    Returns
    -------
    (sections, references): sections are ``{"title", "text"}`` dicts; references are strings in
    citation order ("[1]" is ``references[0]``).
    """
    v = versions()
    c = _Cite()
    analyses = [a for a in analyses]
    params = study.get("analyses") or {}
    pre = study.get("preprocessing") or {}
    stats = study.get("stats") or {}
    fd_max = (study.get("qc") or {}).get("mean_fd_max")
    if fd_max is None and (pre.get("func") or {}).get("exclude_high_motion"):  # older resolved studies
        fd_max = (pre.get("func") or {}).get("max_mean_fd", 0.2)
    sections = []

    intro = (f"Results included in this report were generated with hfsmri {v['hfsmri']} {c('hfsmri')} "
             f"(Python {v['python']}), which builds on nilearn {v['nilearn']} {c('nilearn')}, dipy {v['dipy']} "
             f"{c('dipy')}, ANTsPy {v['antspyx']} {c('ants', 'antspy')}, NumPy {v['numpy']} {c('numpy')} and "
             f"SciPy {v['scipy']} {c('scipy')}. The boilerplate text was automatically generated from the "
             "resolved study definition (study.resolved.yaml) with the express intention that users copy it into "
             "their manuscripts unchanged.")
    sections.append({"title": "Software", "text": intro})

    parts = []
    if n_patients is not None and n_controls is not None:
        parts.append(f"{n_patients} patients and {n_controls} healthy controls were analysed")
    if excluded:
        parts.append(f"{len(excluded)} participant(s) were excluded ("
                     + "; ".join(f"sub-{str(k).removeprefix('sub-')}: {r}" for k, r in excluded.items()) + ")")
    if qc_sentence:
        parts.append(qc_sentence.rstrip("."))
    flip_to = study.get("flip_to")
    if flip_to:
        parts.append(f"images of patients whose affected side was opposite to {flip_to} were mirrored "
                     f"left-right in MNI space so that the affected hemisphere is on the {flip_to} for every patient "
                     f"({len(flipped or [])} patient(s) flipped); controls and bilateral cases were not flipped")
    else:
        parts.append("images were not flipped by affected side")
    if study.get("sessions"):
        parts.append(f"sessions: {_fmt(study['sessions'])}")
    if simulated:
        parts.append("the data were simulated by hfsmri simulate with planted effects (ground truth scored below)")
    if parts:
        sections.append({"title": "Participants", "text": "; ".join(parts) + "."})

    anat_pre = pre.get("anat", {})
    stages = {ANALYSES[a].stage for a in analyses if a in ANALYSES}
    if "anat" in stages:
        from ..spatial.templates import TEMPLATE_SPACE

        bx = str(anat_pre.get("brain_extraction", "template"))
        bx_text = ("by affine registration to the brain-extracted template and mapping its brain mask back to the "
                   "T1w (refined by the non-linear registration)" if bx == "template" else f"with the {bx} method")
        reg = str(anat_pre.get("registration", "SyN"))
        fast = str(anat_pre.get("profile", "standard")) == "fast"
        reg_text = ("symmetric diffeomorphic normalisation (SyN" + (", reduced iterations" if fast else "") + ")"
                    if reg.lower().startswith("syn") else f"{reg} registration")
        sections.append({"title": "Anatomical preprocessing", "text": (
            f"T1-weighted images were corrected for intensity non-uniformity with N4 {c('n4')}, brain-extracted "
            f"{bx_text}, segmented into grey matter (GM), white matter (WM) and cerebrospinal fluid with Atropos "
            f"{c('atropos')} using the template's tissue probability maps as priors, and registered non-linearly "
            f"to the ICBM 2009a nonlinear symmetric MNI152 template {c('mni2009')} (nilearn's bundled copy; outputs "
            f"labelled space-{TEMPLATE_SPACE}; fMRIPrep outputs in MNI152NLin2009cAsym, when used, were taken as "
            f"equivalent and resampled onto the same grid) with ANTs {reg_text} {c('ants')} at "
            f"{_fmt(anat_pre.get('template_resolution', 2))} mm.")})
    func_pre = pre.get("func", {})
    if stages & {"func", "conn"}:
        st = str(func_pre.get("slice_timing", "auto")).lower()
        st_text = {"false": "Slice-timing correction was not applied. ",
                   "true": "Slice-timing correction was applied to every run before head-motion estimation",
                   "auto": "Slice-timing correction was applied before head-motion estimation to the runs whose "
                           "sidecar gives SliceTiming (runs without it were not corrected; see the QC table)"}
        st_text = st_text.get(st, st_text["auto"])
        if st != "false" and slice_timing and not any(str(k).startswith("corrected") for k in slice_timing):
            st, st_text = "false", "Slice-timing correction was not applied (no run's sidecar gives SliceTiming). "
        if st != "false":
            st_text += (": each slice was shifted to the middle of the acquisition window (as fMRIPrep's default "
                        "reference) by Fourier interpolation of the mirror-extended series. ")
        sections.append({"title": "Functional preprocessing", "text": (
            "When a subject had several resting-state runs, the run with the most volumes was analysed, and of a "
            "multi-echo run the echo with echo time closest to 30 ms (echoes were not combined); every choice is "
            "listed in logs/inputs.tsv. "
            f"The first {_fmt(func_pre.get('dummy_scans', 5))} volumes of each resting-state run were discarded. "
            + st_text +
            "Head motion was estimated and framewise displacement (FD) computed as in Power et al. "
            f"{c('power2012')}; runs were registered to MNI space at {_fmt(func_pre.get('resolution', 3))} mm, "
            "nuisance signals regressed out (global signal: "
            f"{_fmt(func_pre.get('global_signal', False))}), band-pass filtered to "
            f"{_fmt(func_pre.get('band', [0.01, 0.08]))} Hz (not for ALFF/fALFF), and scrubbing of volumes with "
            f"FD > {_fmt(func_pre.get('fd_scrub_threshold', 0.5))} mm was "
            f"{'applied' if func_pre.get('scrubbing') else 'not applied'}; runs with mean FD > "
            + (f"{_fmt(fd_max)} mm were excluded (study.yaml qc: mean_fd_max)." if fd_max is not None else
               f"{_fmt(func_pre.get('max_mean_fd', 0.2))} mm were flagged in the QC table."))})

    for a in analyses:
        text = _analysis_text(a, params.get(a) or {}, pre, c, study.get("covariates") or [])
        if text:
            sections.append({"title": ANALYSES[a].title if a in ANALYSES else a, "text": text})

    if stats or analyses:
        covs = _fmt(study.get("covariates") or []) or "none"
        clin = study.get("clinical") or []
        tfce = stats.get("tfce", True)
        txt = (f"Group differences (patients vs controls, both directions) were tested with a general linear model "
               f"with covariates {covs}"
               + (f" (site column '{study['site_column']}')" if study.get("site_column") else "") +
               f". Inference was non-parametric: {_fmt(stats.get('n_perm', 5000))} Freedman–Lane permutations "
               f"{c('freedman', 'winkler')} (random seed {_fmt(stats.get('random_seed', 0))}), with "
               + (f"threshold-free cluster enhancement (TFCE; H = 2, E = 0.5, 6-connectivity in 3D) {c('tfce')}"
                  if tfce else "the voxel-wise t statistic") +
               " and family-wise error (FWE) control by the permutation distribution of the maximum statistic; "
               f"maps are thresholded at FWE p < {_fmt(stats.get('alpha', 0.05))}. ")
        if clin:
            txt += (f"Within patients, associations with the clinical scores ({_fmt(clin)}) were tested with the "
                    "same model (partial correlations adjusted for the covariates). ")
        txt += (f"ROI-level tests report Benjamini–Hochberg FDR-corrected p-values {c('bh')} where stated. "
                f"Clusters were labelled with the AAL2 {c('aal')} and Harvard–Oxford {c('ho')} atlases at their "
                "peak (MNI mm)"
                + (f"; peaks of the diffusion analyses with the white-matter tract labels of the Jülich atlas "
                   f"{c('juelich')} (the JHU atlas is not bundled offline)" if "dwi" in stages else "") + ".")
        scope = str(stats.get("familywise", "none")).lower()  # hfsmri.analyses.FAMILYWISE_SCOPES
        if scope in ("contrasts", "metrics"):
            what = ("all contrasts of each metric (both directions of each comparison as one two-sided family, "
                    "and the clinical correlations)" if scope == "contrasts" else
                    "all contrasts of all metrics of each analysis (e.g. FA, MD, AD and RD together)")
            txt += (f" Besides the per-contrast FWE maps, family-wise p-values over {what} were computed from the "
                    "same permutations (maximum statistic over the family, as PALM's -corrcon/-corrmod; designs "
                    "with different permutations combined by Šidák's rule); the findings list uses them. "
                    "Different analyses were not corrected for each other.")
        else:
            txt += (" FWE control is per contrast map: the contrasts (both directions of each comparison, the "
                    "clinical correlations), the metrics and the analyses were not corrected for each other, so "
                    "the chance of at least one false-positive map across all of them is above α.")
        mcv, mdf = stats.get("min_cluster_voxels"), stats.get("min_df_correlation")
        if mcv:
            txt += (f" Clusters smaller than {int(mcv)} voxels are listed in the cluster tables but not reported as "
                    "findings.")
        if mdf:
            txt += (f" Voxel-wise correlations were computed only when the residual degrees of freedom were at least "
                    f"{int(mdf)} (otherwise ROI correlations only).")
        vs = float(stats.get("variance_smoothing") or 0)
        if vs > 0:
            txt += f" The variance of the t statistic was smoothed with a {vs:g} mm FWHM Gaussian kernel (as randomise -v)."
        sections.append({"title": "Statistics", "text": txt})
    not_done = _not_done(stages, pre, params, slice_timing)
    if not_done:
        sections.append({"title": "Not done", "text": not_done})
    long_txt = _longitudinal_text(study, analyses, c)
    if long_txt:
        sections.append({"title": "Longitudinal designs", "text": long_txt})

    refs = [REFERENCES[k].format(version=v["hfsmri"]) for k in c.order]
    return sections, refs


def _not_done(stages: set, pre: dict, params: dict, slice_timing: dict | None) -> str:
    """The corrections hfsmri did not apply, for the modalities that were analysed."""
    items = []
    if stages & {"func", "conn"}:
        st = str((pre.get("func") or {}).get("slice_timing", "auto")).lower()
        counts = slice_timing or {}
        n_done = sum(n for k, n in counts.items() if str(k).startswith("corrected"))
        n_all = sum(counts.values())
        if st == "false" or (counts and n_done == 0):
            items.append("no slice-timing correction" + (" (no run had SliceTiming in its sidecar)"
                                                          if st != "false" and n_all else ""))
        elif counts and n_done < n_all:
            items.append(f"no slice-timing correction of the {n_all - n_done} of {n_all} BOLD runs without "
                         "SliceTiming")
        items.append("no susceptibility-distortion correction of the BOLD images (field maps were not used)")
    if "dwi" in stages:
        mc = (params.get(DTI_ANALYSIS) or {}).get("motion_correction", True)
        items.append("no susceptibility-distortion correction (topup-like) of the diffusion images and no "
                     "eddy-current correction beyond "
                     + ("the affine registration of each volume to the mean b0 with b-vector rotation" if mc
                        else "none: motion correction was off") +
                     " (no FSL eddy outlier replacement or slice-to-volume correction)")
    if "anat" in stages:
        items.append("no cortical surface reconstruction (thickness is volumetric)")
    return ("The following were not done: " + "; ".join(items) + ".") if items else ""


def _longitudinal_text(study: dict, analyses, c: _Cite) -> str | None:
    """The pre/post paragraph (``sessions`` with at least two labels), or None; follows
    :func:`hfsmri.group.runner.run_longitudinal` and the stages' longitudinal options."""
    sessions = [str(x) for x in (study.get("sessions") or [])]
    if len(sessions) < 2:
        return None
    pre, post = sessions[0], sessions[-1]
    clin = study.get("clinical") or []
    txt = (f"Longitudinal effects were tested on the within-subject change Δ = {post} − {pre} (participants with "
           f"both sessions; {_fmt(sessions)} listed, first = baseline, last = follow-up): paired tests within "
           f"patients (and within controls scanned twice) by sign flipping {c('winkler')}; the group × time "
           "interaction as patients' Δ versus controls' Δ with the covariates, permuting whole subjects so that "
           "each subject's two scans stay together")
    if clin:
        txt += (f"; and, within patients, Δ regressed on the change of each clinical score ({_fmt(clin)}) "
                "(does the brain change track clinical recovery?)")
    txt += ". The cross-sectional group comparisons above use the baseline session."
    anat_pre = (study.get("preprocessing") or {}).get("anat", {})
    if any(a in ANALYSES and ANALYSES[a].stage == "anat" for a in analyses):
        if anat_pre.get("longitudinal", "midspace") == "midspace":
            txt += (" Each subject's T1-weighted images were first rigidly aligned to an unbiased within-subject "
                    f"mid-space and averaged into a subject template {c('reuter')}, which was segmented and "
                    "normalised once, so that both sessions are processed symmetrically.")
        else:
            txt += " The T1-weighted images of each session were processed independently."
    for a in ANALYSES:   # the analyses' own longitudinal choices (TBSS, ICA, graph), registry order
        if a in analyses:
            txt += ANALYSES[a].longitudinal_methods
    return txt


def methods_markdown(sections: list[dict], refs: list[str]) -> str:
    """Plain-text (Markdown) version of the boilerplate, written next to the report."""
    lines = ["# Methods (generated by hfsmri)", ""]
    for s in sections:
        lines += [f"**{s['title']}.** {s['text']}", ""]
    lines += ["## References", ""] + [f"{i}. {r}" for i, r in enumerate(refs, 1)]
    return "\n".join(lines) + "\n"
