"""The analyses of hfsmri, declared once: parameters, metrics, group-level conventions, methods text.

Every other module asks this registry (:data:`ANALYSES`, :func:`spec`) instead of naming an
analysis: the study model validates ``analyses`` of study.yaml against each
:class:`AnalysisSpec`'s parameter schema (type, range, choices; a fault is one
:class:`~hfsmri.errors.StudyError` naming ``analyses.<name>.<param>``); the group runner
(:mod:`hfsmri.group`) reads the metrics with their participant-map entities, the mask rule, the
side at which the affected hemisphere is aligned, the extra covariates, the TFCE setting and the
ROI sets; the command line takes its ``--skip`` choices, the report its order, headings and
methods sentences, the demo its settings and the simulator the quantity each metric measures.

The keys of :data:`ANALYSES` are the contract's ``analyses`` keys of study.yaml and the
``<analysis>`` folder names of group results; :class:`MetricSpec` names are the ``<metric>``
folders. Each analysis belongs to one participant stage (``hfsmri.<stage>.participant``, the
"participant block" that writes its inputs). Adding a metric means: its kernel, its participant
block writing the map under :meth:`Input.path`, and its spec here (docs/architecture.md has a
worked example).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import StudyError

from .spatial.templates import TEMPLATE_SPACE  # noqa: E402,F401  (the space entity; owner: spatial.templates)

#: participant stages in the order they run for a subject (later ones reuse earlier outputs)
STAGE_ORDER = ("anat", "dwi", "func", "conn")
#: stages a stage needs to have run first (func preprocessing feeds connectivity)
STAGE_NEEDS = {"conn": ("func",), "func": (), "dwi": (), "anat": ()}
#: input each stage needs: attribute of bids.SubjectInputs
STAGE_INPUT = {"anat": "t1w", "dwi": "dwi", "func": "bold", "conn": "bold"}
#: a group analysis needs at least this many participants
MIN_SUBJECTS = 4


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One analysis parameter: default, meaning, and the values allowed.

    ``kind``: "int", "number" (int or float), "bool", "str", "list" (of ``item`` kind, ``length``
    items when set), "mapping" or "any". ``lo``/``hi``: inclusive bounds of numbers;
    ``choices``: allowed values; ``nullable``: ``null`` allowed. Values are checked, never
    converted (the resolved study keeps what the user wrote).
    """

    default: Any
    doc: str
    kind: str = "number"
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    nullable: bool = False
    item: str | None = None
    length: int | None = None

    def check(self, value, where: str, path=None):
        def bad(expected):
            return StudyError(f"must be {expected}, got {value!r}", path=path, field=where)

        if value is None:
            if self.nullable:
                return value
            raise bad(f"a {self.kind} value (not null)")
        if self.kind == "list":
            if not isinstance(value, (list, tuple)):
                raise bad("a list")
            if self.length is not None and len(value) != self.length:
                raise bad(f"a list of {self.length} values")
            for i, v in enumerate(value):
                Param(None, "", kind=self.item or "any").check(v, f"{where}[{i}]", path)
            return value
        ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
              "mapping": lambda v: isinstance(v, dict), "any": lambda v: True}[self.kind]
        if not ok(value):
            raise bad({"int": "an integer", "number": "a number", "bool": "true or false", "str": "text",
                       "mapping": "a mapping"}[self.kind])
        if self.choices and value not in self.choices:
            raise bad("one of " + ", ".join(map(repr, self.choices)))
        if self.lo is not None and value < self.lo or self.hi is not None and value > self.hi:
            raise bad(f"between {self.lo} and {self.hi}")
        return value


def _fwhm(default: float) -> Param:
    return Param(default, "Gaussian smoothing kernel (mm FWHM) of the group-analysis maps", lo=0, hi=30)


def _resolution() -> Param:
    return Param(2, "voxel size (mm) of the MNI-space maps", lo=0.5, hi=8)


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Input:
    """A participant output a group analysis reads: ``sub-X[_ses-Y]_<entities>_<suffix><ext>`` in
    ``<datatype>/`` (:meth:`hfsmri.derivatives.Derivatives.path`).

    ``res``: where the ``res`` entity comes from (``"analyses.<a>.<param>"`` or
    ``"preprocessing.<stage>.<param>"``), None for native-space files (no space, no res);
    ``template``: in template space (``space-MNI152NLin2009aSym``); ``aligned``: written already
    aligned to the affected side (:attr:`hfsmri.pipeline.ParticipantContext.flip`), else the group
    level aligns it (maps: mirror x -> -x; tables: swap left/right names); tables: ``index`` /
    ``value`` columns (``value=None``: the metric's name).
    """

    datatype: str
    suffix: str
    entities: Mapping = field(default_factory=dict)
    res: str | None = None
    template: bool = True
    ext: str = ".nii.gz"
    aligned: bool = True
    index: str | None = None
    value: str | None = None

    def path(self, out, sub, ses, res=None, **entities) -> Path:
        """The participant file (``res``: the resolution setting's value; ignored in native space)."""
        return out.path(sub, ses, self.datatype, self.suffix, space=TEMPLATE_SPACE if self.template else None,
                        res=res if self.template and self.res else None, entities={**self.entities, **entities},
                        ext=self.ext)


FUNC_RES = "preprocessing.func.resolution"
DTI_RES = "analyses.dti.resolution"
DWI_MASK = Input("dwi", "mask", {"desc": "brain"}, res=DTI_RES)
FUNC_MASK = Input("func", "mask", {"task": "rest", "desc": "brain"}, res=FUNC_RES, aligned=False)
FUNC_BOLD = Input("func", "bold", {"task": "rest", "desc": "clean"}, res=FUNC_RES, aligned=False)
#: seed FC maps (``seed=<name>`` entity; the smoothed one is the group input, the raw one feeds the ROI pairs)
SEED_MAP = Input("func", "boldmap", {"task": "rest", "desc": "fisherzsmooth"}, res=FUNC_RES, aligned=False)
SEED_RAW = Input("func", "boldmap", {"task": "rest", "desc": "fisherz"}, res=FUNC_RES, aligned=False)
FUNC_QC = Input("func", "stats", {"task": "rest", "desc": "qc"}, template=False, ext=".tsv")
ANAT_TISSUE = Input("anat", "stats", {"desc": "tissue"}, template=False, ext=".tsv")


def _func_map(suffix: str) -> Input:
    return Input("func", suffix, {"task": "rest", "desc": "zsmooth"}, res=FUNC_RES, aligned=False)


@dataclass(frozen=True)
class Covariate:
    """An extra covariate of a design, one value per participant from a participant table."""

    source: Input
    column: str
    drop_if_constant: bool = False   # a constant value leaves the design (with a warning) instead of failing


#: extra covariates (name in the design -> where its value comes from)
COVARIATES = {"TIV": Covariate(ANAT_TISSUE, "tiv_ml", drop_if_constant=True),
              "mean_fd": Covariate(FUNC_QC, "mean_fd")}


@dataclass(frozen=True)
class QcTable:
    """The group copy of a modality's participant QC table (``group/<stage>_qc.tsv``, with an
    ``excluded`` column): read from the source of the extra covariate ``value``. Who is excluded is
    decided by :mod:`hfsmri.qc.decisions` (study.yaml ``qc:``), not here."""

    value: str
    stage: str


#: group QC tables per modality
QC_TABLES = {"bold": QcTable("mean_fd", "func")}


# --------------------------------------------------------------------------- metrics and rules
@dataclass(frozen=True)
class MetricSpec:
    """One ``group/<analysis>/<metric>/`` folder: its voxel-wise ``map`` and/or its ROI ``table``.

    ``quantity``: the simulated quantity (:mod:`hfsmri.simulate.effects`) this metric measures
    by default, so that planted effects are scored on it.
    """

    name: str
    map: Input | None = None
    table: Input | None = None
    quantity: str | None = None
    entities: Mapping = field(default_factory=dict)   # extra entities of the inputs (e.g. seed-<name>)
    rois: tuple | None = None                         # ROI sets (None: the analysis' ``rois``)
    sidecar: Mapping = field(default_factory=dict)    # extra entries of every sidecar


@dataclass(frozen=True)
class MaskRule:
    """Voxels of a voxel-wise analysis.

    ``template``: a template image (``"GM"`` probability or the brain ``"mask"``) at the analysis
    grid, thresholded at ``>= threshold``; ``subject_masks``: the intersection of every
    participant's own mask (aligned); ``white_matter``: ``(FA input, threshold setting)``: every
    participant's FA > 0 and mean FA >= the threshold; these make the analysis' base mask (shared
    by its metrics, and the mask of its longitudinal designs). ``covered``: the cross-sectional
    mask also needs every included participant's map of the metric finite and ``"nonzero"`` /
    ``"positive"`` (a longitudinal analysis always needs every map of both sessions finite and
    non-zero).
    """

    template: str | None = None
    threshold: float = 0.5
    subject_masks: Input | None = None
    white_matter: tuple | None = None
    covered: str | None = None


@dataclass(frozen=True)
class RoiSet:
    """Regions whose mean map value per participant goes through the ROI tests (``rois.tsv``).

    ``regions``: name -> :func:`hfsmri.spatial.atlas.region_mask` spec; ``clusters``: the (up to
    10) significant clusters of the group contrasts instead; ``values``: the maps the means are
    taken from (None: the metric's own maps); ``longitudinal``: also in ``desc-longitudinal_rois.tsv``.
    """

    regions: Mapping = field(default_factory=dict)
    clusters: bool = False
    values: Input | None = None
    longitudinal: bool = True


@dataclass(frozen=True)
class TableRule:
    """ROI columns kept: ``"complete"`` (a value for every participant), ``"positive"`` (> 0 for
    every participant) or ``"any"`` (at least one value); ``exclude``: regular expression of ROI
    names left out."""

    keep: str = "complete"
    exclude: str | None = None


#: the review's functional ROIs (Tu 2015, Wei 2015, Lu 2018: ReHo changes)
REVIEW_FUNC_ROIS = {
    "MFG_L": "aal:Frontal_Mid_2_L", "MCC_L": "aal:Cingulate_Mid_L", "Lingual_L": "aal:Lingual_L",
    "STG_R": "aal:Temporal_Sup_R", "Precuneus_R": "aal:Precuneus_R", "SMA_R": "aal:Supp_Motor_Area_R",
    "Precentral_L": "aal:Precentral_L", "Brainstem": "ho:Brain-Stem", "CerebellumCrus1_R": "aal:Cerebelum_Crus1_R",
    "Cerebellum6_L": "aal:Cerebelum_6_L", "ACC_R": "aal:Cingulate_Ant_R",
}
#: region specs of the review's ROI-to-ROI targets of seed FC; ``{h}`` is the hemisphere letter
SEED_TARGET_REGIONS = {
    "mPFC": "aal:Frontal_Sup_Medial_{h}+aal:Frontal_Med_Orb_{h}",
    "OFC": "aal:OFCmed_{h}+aal:OFCant_{h}+aal:OFCpost_{h}+aal:OFClat_{h}",
    "insula": "aal:Insula_{h}",
    "SMG": "aal:SupraMarginal_{h}",
    "SAC": "aal:Parietal_Sup_{h}",  # somatosensory association cortex (BA 5/7, superior parietal lobule)
    "motor": "aal:Precentral_{h}",
}
#: seed base name -> targets (Xu 2019 amygdala; Niu 2020 thalamus; Gao 2021 striatum)
SEED_TARGETS = {"amygdala": ("mPFC", "OFC", "insula"), "thalamus": ("SMG", "SAC"),
                **{s: ("motor", "OFC") for s in ("caudate", "putamen", "accumbens", "pallidum", "dc", "vc", "drp",
                                                 "vrp", "dcp", "vis")}}


# --------------------------------------------------------------------------- analyses
@dataclass(frozen=True)
class AnalysisSpec:
    """Everything hfsmri knows about one analysis.

    ``metrics``: the group folders with their participant inputs; ``derive``: ``"module:function"``
    building the metrics' data at the group level instead (TBSS skeleton, group ICA, graph tables;
    called with the group context, this spec and its parameters) or listing them from the
    parameters (seed FC: one metric per seed); ``needs``: participant outputs every included
    participant must have; ``covariates``: extra covariates (:data:`COVARIATES`) of every
    design, or a function of the parameters; ``normalise``: a covariate the ROI values are divided by
    (times its mean) instead, as a function of the parameters; ``tfce``: ``"3d"``, ``"skeleton"`` or
    ``"param:<name>"``; ``methods``: the methods sentence (function of the parameters, the
    preprocessing and the citation numberer); ``demo``: the parameters of ``hfsmri demo``.
    """

    name: str
    stage: str
    title: str
    params: Mapping[str, Param]
    methods: Callable
    metrics: tuple = ()
    derive: str | None = None
    needs: tuple = ()
    mask: MaskRule | None = None
    covariates: Any = ()
    normalise: Callable | None = None
    tfce: str = "3d"
    rois: tuple = ()
    table: TableRule = TableRule()
    longitudinal_methods: str = ""
    demo: Mapping = field(default_factory=dict)
    check: Callable | None = None

    def defaults(self) -> dict:
        return {k: copy.deepcopy(p.default) for k, p in self.params.items()}

    def validate(self, given: Mapping, path=None) -> dict:
        """``given`` over the defaults, every value checked; unknown names are errors."""
        import difflib

        out = copy.deepcopy(DEFAULTS[self.name])
        for k, v in (given or {}).items():
            if k not in self.params:
                close = difflib.get_close_matches(str(k), list(self.params), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise StudyError(f"unknown parameter {k!r}{hint}; known: {', '.join(self.params)}", path=path,
                                 field=f"analyses.{self.name}")
            out[k] = self.params[k].check(v, f"analyses.{self.name}.{k}", path)
        if self.check is not None:
            self.check(out, path)
        return out

    def extra_covariates(self, params: Mapping) -> tuple:
        return tuple(self.covariates(params) if callable(self.covariates) else self.covariates)


def _check_band(p, path):
    lo, hi = p["band"]
    if not 0 <= lo < hi:
        raise StudyError(f"band must be [low, high] Hz with 0 <= low < high, got {p['band']!r}", path=path,
                         field="analyses.alff.band")


def _check_sparsity(p, path):
    if not p["sparsity_min"] <= p["sparsity_max"]:
        raise StudyError(f"sparsity_min {p['sparsity_min']} is above sparsity_max {p['sparsity_max']}", path=path,
                         field="analyses.graph.sparsity_min")


def fmt_param(v) -> str:
    """A parameter value as the methods text writes it."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return "–".join(fmt_param(x) for x in v) if len(v) == 2 and all(isinstance(x, (int, float)) for x in v) \
            else ", ".join(fmt_param(x) for x in v)
    return "none" if v is None else str(v)


def _methods_vbm(g, pre, c):
    mod = ("modulated by the Jacobian determinant of the deformation so that they encode local volume"
           if g("modulated", True) else "not modulated (tissue concentration)")
    return (f"Voxel-based morphometry (VBM) {c('vbm_ashburner', 'vbm_good')}: grey-matter (GM) probability "
            f"maps were warped to MNI space at {fmt_param(g('resolution', 2))} mm, {mod}, and smoothed with an "
            f"isotropic Gaussian kernel of {fmt_param(g('fwhm', 8))} mm FWHM. Total intracranial volume (TIV) "
            "was added to the covariates of the VBM model.")


def _methods_thickness(g, pre, c):
    m = str(g("method", "laplace")).lower()
    cite = c("laplace") if m == "laplace" else c("direct") if m in ("direct", "kellykapowski") else ""
    fwhm = float(g("fwhm", 0) or 0)
    atlas = str(g("atlas", "harvard_oxford"))
    atlas_name = {"harvard_oxford": "Harvard–Oxford", "ho": "Harvard–Oxford", "aal": "AAL2"}.get(atlas, atlas)
    return (f"Cortical thickness was estimated voxel-wise (volumetric, no surface reconstruction) with the "
            f"{'Laplace' if m == 'laplace' else 'DiReCT'} method {cite} on each participant's GM/WM segmentation in "
            f"native T1w space; regional mean thickness (mm) was computed in native space in the regions of the "
            f"{atlas_name} atlas {c('ho') if 'harvard' in atlas or atlas == 'ho' else c('aal')} mapped to the "
            f"participant. For the voxel-wise group analysis the native thickness maps were mapped to MNI space at "
            f"{fmt_param(g('resolution', 2))} mm by GM-normalised interpolation (thickness-weighted warp divided by "
            f"the warped GM support) and "
            + (f"smoothed within the cortex with {fmt_param(fwhm)} mm FWHM." if fwhm > 0 else "not smoothed."))


def _methods_dti(g, pre, c):
    fit = str(g("fit", "wls")).upper()
    return (f"Diffusion tensors {c('basser')} were fitted by {fit} {c('wls') if fit == 'WLS' else ''} with "
            f"dipy-compatible conventions {c('dipy')} to the volumes with b ≤ {fmt_param(g('bmax', 1500))} s/mm² "
            f"(b0 threshold {fmt_param(g('b0_threshold', pre.get('dwi', {}).get('b0_threshold', 50)))} s/mm²; motion "
            f"correction: {fmt_param(g('motion_correction', True))}; denoising: {fmt_param(g('denoise'))}); b0 volumes "
            "written with b > 0 and a gradient direction entered the fit with their actual b-value and "
            "direction, as in dipy and FSL dtifit, and for a subject without any diffusion-weighted shell at or "
            "below the limit the lowest shell would be used (the volumes of each subject's fit are listed in "
            "its map sidecars, TensorFitVolumes). Fractional "
            "anisotropy (FA), mean (MD = (λ1+λ2+λ3)/3), axial (AD = λ1) and radial diffusivity "
            f"(RD = (λ2+λ3)/2) maps were warped to MNI space at {fmt_param(g('resolution', 2))} mm. The number "
            "of diffusion directions of every subject is listed in the QC table.")


def _methods_seed_fc(g, pre, c):
    import re

    di = c("dimartino") if any(re.match(r"^(dc|vc|drp|vrp|dcp|vis)", str(s)) for s in g("seeds", []) or []) else ""
    return (f"Seed-based functional connectivity {c('biswal')}: the mean cleaned time series of each seed "
            f"({fmt_param(g('seeds', []))}) {di} was correlated (Pearson) with every voxel; correlations were Fisher "
            f"z-transformed and smoothed with {fmt_param(g('fwhm', 6))} mm FWHM.")


def _methods_graph(g, pre, c):
    return (f"Functional connectomes were built from the regions of the {fmt_param(g('atlas', 'aal'))} atlas "
            f"{c('aal') if str(g('atlas', 'aal')).startswith('aal') else ''} ({fmt_param(g('kind', 'pearson'))} "
            "correlation of regional mean time series). Graph metrics "
            f"{c('rubinov2010', 'networkx')} were computed over the sparsity range "
            f"{fmt_param(g('sparsity_min', 0.05))}–{fmt_param(g('sparsity_max', 0.4))} (step "
            f"{fmt_param(g('sparsity_step', 0.01))}), keeping the strongest positive edges, and summarised by the "
            f"area under the curve; small-world indices used {fmt_param(g('n_random', 20))} degree-preserving "
            f"random graphs {c('maslov', 'smallworld')}. Edge-wise group differences were tested with the "
            f"network-based statistic {c('nbs')} at a primary threshold t = {fmt_param(g('nbs_threshold', 3))}.")


_MEAN_FD = ("mean_fd",)
_SEEDS = ["amygdalaL", "amygdalaR", "thalamusL", "thalamusR", "putamenL", "putamenR", "caudateL", "caudateR"]
_DWI_MAPS = {m: Input("dwi", "dwimap", {"model": "tensor", "param": m}, res=DTI_RES) for m in ("fa", "md", "ad", "rd")}
_DWI_NEEDS = (*_DWI_MAPS.values(), DWI_MASK)
_FUNC_MASK_RULE = MaskRule(template="mask", covered="nonzero")
_FUNC_ROIS = (RoiSet(REVIEW_FUNC_ROIS), RoiSet(clusters=True, longitudinal=False))
#: ROI-name prefix of the regions made from significant clusters (``RoiSet(clusters=True)``,
#: :func:`hfsmri.group.runner.cluster_rois`)
CLUSTER_ROI_PREFIX = "cluster-"
#: ``roi_set`` values of the ROI tables (``rois.tsv``, ``correlations.tsv``): each is its own
#: multiple-comparison family (:func:`hfsmri.group.runner.roi_families`)
ROI_SETS = {"a priori": "declared before the analysis (one family)",
            "cluster": "significant clusters of the voxel-wise group test (a second family; their group "
                       "test is circular — selected by the same data — and is descriptive only)"}

_SPECS = (
    AnalysisSpec(
        "vbm", "anat", "Voxel-based morphometry (grey-matter volume)",
        {"resolution": _resolution(), "fwhm": _fwhm(8.0),
         "modulated": Param(True, "modulate by the Jacobian determinant (volume, not concentration)", "bool"),
         "unmodulated": Param(False, "also write unmodulated GM maps", "bool")},
        _methods_vbm,
        metrics=(MetricSpec("gm", Input("anat", "probseg", {"label": "GM", "desc": "modulated"},
                                        res="analyses.vbm.resolution"), quantity="gm"),),
        mask=MaskRule(template="GM", threshold=0.2), covariates=("TIV",)),
    AnalysisSpec(
        "thickness", "anat", "Cortical thickness",
        {"method": Param("laplace", "thickness method", "str", choices=("laplace", "direct")),
         "resolution": _resolution(), "fwhm": _fwhm(0.0),
         "atlas": Param("harvard_oxford", "atlas of the regional mean thickness", "str")},
        _methods_thickness,
        metrics=(MetricSpec("thickness", Input("anat", "morph", {"desc": "thickness"},
                                               res="analyses.thickness.resolution"),
                            table=Input("anat", "stats", {"desc": "thickness"}, template=False, ext=".tsv",
                                        aligned=False, index="region", value="thickness_mm")),),
        mask=MaskRule(template="GM", threshold=0.3, covered="positive"),
        table=TableRule("complete", r"Ventric|Brain-Stem|Thalamus|Caudate|Putamen|Pallidum|Hippocampus|Amygdala"
                                    r"|Accumbens")),
    AnalysisSpec(
        "roi_volumes", "anat", "Regional grey-matter volumes",
        {"tiv": Param("covariate", "TIV as a covariate, or volumes normalised by TIV (x mean TIV)", "str",
                      choices=("covariate", "normalise", "normalize"))},
        lambda g, pre, c: (
            "Regional GM volumes (thalamus, putamen, pallidum, amygdala, hippocampus, parahippocampal gyrus, "
            "cerebellum VI/VIII, inferior parietal lobule, dorsolateral prefrontal cortex) were obtained by "
            f"summing modulated GM in atlas regions {c('aal', 'ho')}; "
            + ("total intracranial volume (TIV) was a covariate of the group model." if g("tiv", "covariate") ==
               "covariate" else "each volume was divided by the participant's total intracranial volume (TIV) and "
                                "multiplied by the mean TIV (proportional normalisation).")),
        metrics=(MetricSpec("volume", table=Input("anat", "stats", {"desc": "roivolumes"}, template=False,
                                                  ext=".tsv", aligned=False, index="region", value="volume_ml"),
                            quantity="gm"),),
        needs=(ANAT_TISSUE,), covariates=lambda p: ("TIV",) if p["tiv"] == "covariate" else (),
        normalise=lambda p: None if p["tiv"] == "covariate" else "TIV", table=TableRule("positive")),
    AnalysisSpec(
        "dti", "dwi", "Diffusion tensor maps (voxel-wise)",
        {"fit": Param("wls", "tensor fit", "str", choices=("ols", "wls", "iwls")),
         "b0_threshold": Param(50, "b-value (s/mm²) at or below which a volume is a b0", lo=0, hi=1000),
         "bmax": Param(1500, "largest b-value (s/mm²) used in the tensor fit", lo=100, hi=10000),
         "resolution": _resolution(),
         "denoise": Param(None, "denoising of raw DWI", "str", choices=("mppca", "patch2self"), nullable=True),
         "motion_correction": Param(True, "affine motion/eddy correction to the mean b0 (raw DWI)", "bool")},
        _methods_dti,
        metrics=tuple(MetricSpec(m, i) for m, i in _DWI_MAPS.items()),
        needs=_DWI_NEEDS,
        mask=MaskRule(subject_masks=DWI_MASK, white_matter=(_DWI_MAPS["fa"], "analyses.tbss.fa_threshold")),
        demo={"motion_correction": False}),   # the simulated DWI has no head motion
    AnalysisSpec(
        "tbss", "dwi", "Tract-based spatial statistics",
        {"fa_threshold": Param(0.2, "mean-FA threshold of the skeleton (and of the dti white-matter mask)",
                               lo=0, hi=1),
         "tfce_setting": Param("skeleton", "TFCE setting of the skeleton statistics", "str",
                               choices=("skeleton", "3d"))},
        lambda g, pre, c: (
            f"Tract-based spatial statistics (TBSS) {c('smith2006')}: the mean FA image of all subjects was "
            f"skeletonised and thresholded at FA ≥ {fmt_param(g('fa_threshold', 0.2))}; each subject's maximal "
            "FA perpendicular to the skeleton was projected onto it, and MD, AD and RD were projected with "
            "the FA projection. Skeleton-wise statistics used TFCE with the 2D/skeleton setting "
            f"(H = 2, E = 1, 26-connectivity) {c('tfce')}."),
        derive="hfsmri.dwi.group:tbss_metrics", needs=_DWI_NEEDS, tfce="param:tfce_setting",
        longitudinal_methods=(" For TBSS, the skeleton of the baseline mean FA was kept and every follow-up FA "
                              "image was projected onto it by its own perpendicular search (MD, AD and RD with the "
                              "same projection).")),
    AnalysisSpec(
        "dwi_rois", "dwi", "Tract and corpus-callosum ROIs",
        {"atlas": Param("juelich", "white-matter tract atlas", "str"),
         "callosum_scheme": Param("witelson", "corpus callosum subdivision scheme", "str")},
        lambda g, pre, c: (
            f"Mean FA, MD, AD and RD were extracted in white-matter tracts of the {fmt_param(g('atlas', 'juelich'))} "
            f"atlas {c('juelich')} (inferior longitudinal and inferior fronto-occipital fascicles, superior "
            "longitudinal fascicle, posterior limb of the internal capsule, posterior thalamic radiation) and "
            f"in corpus callosum subdivisions ({fmt_param(g('callosum_scheme', 'witelson'))} scheme "
            f"{c('witelson')}: genu, body, splenium, whole)."),
        metrics=tuple(MetricSpec(m, table=Input("dwi", "stats", {"desc": "tracts"}, res=DTI_RES, ext=".tsv",
                                                index="roi")) for m in ("fa", "md", "ad", "rd")),
        needs=_DWI_NEEDS, table=TableRule("any")),
    AnalysisSpec(
        "reho", "func", "Regional homogeneity (ReHo)",
        {"neighborhood": Param(27, "voxels of the neighbourhood (7, 19 or 27)", "int", choices=(7, 19, 27)),
         "fwhm": _fwhm(4.0)},
        lambda g, pre, c: (
            f"Regional homogeneity (ReHo) {c('zang2004')} was computed as Kendall's coefficient of concordance "
            f"of the time series of each voxel and its {int(g('neighborhood', 27)) - 1} nearest in-mask "
            f"neighbours (ties given mean ranks), standardised, and smoothed with {fmt_param(g('fwhm', 4))} mm FWHM."),
        metrics=(MetricSpec("reho", _func_map("reho"), quantity="reho"),),
        mask=_FUNC_MASK_RULE, covariates=_MEAN_FD, rois=_FUNC_ROIS),
    AnalysisSpec(
        "alff", "func", "Amplitude of low-frequency fluctuations (ALFF, fALFF)",
        {"band": Param([0.01, 0.08], "frequency band (Hz)", "list", item="number", length=2),
         "fwhm": _fwhm(4.0)},
        lambda g, pre, c: (
            f"The amplitude of low-frequency fluctuations (ALFF) {c('zang2007')} and fractional ALFF {c('falff')} "
            f"were computed (DPABI conventions) in the {fmt_param(g('band', [0.01, 0.08]))} Hz band, standardised "
            f"and smoothed with {fmt_param(g('fwhm', 4))} mm FWHM."),
        metrics=(MetricSpec("alff", _func_map("alff"), quantity="alff"),
                 MetricSpec("falff", _func_map("falff"), quantity="alff")),
        mask=_FUNC_MASK_RULE, covariates=_MEAN_FD, rois=_FUNC_ROIS, check=_check_band),
    AnalysisSpec(
        "dc", "func", "Degree centrality",
        {"r_threshold": Param(0.25, "correlation threshold of an edge", lo=-1, hi=1), "fwhm": _fwhm(4.0)},
        lambda g, pre, c: (
            f"Degree centrality {c('zuo2012')} was computed over all grey-matter voxel pairs with correlation "
            f"r > {fmt_param(g('r_threshold', 0.25))}, binarised (dcb) and weighted (dcw), and smoothed with "
            f"{fmt_param(g('fwhm', 4))} mm FWHM."),
        metrics=(MetricSpec("dcb", _func_map("dcb")), MetricSpec("dcw", _func_map("dcw"))),
        mask=_FUNC_MASK_RULE, covariates=_MEAN_FD, rois=_FUNC_ROIS),
    AnalysisSpec(
        "vmhc", "func", "Voxel-mirrored homotopic connectivity (VMHC)",
        {"fwhm": _fwhm(4.0)},
        lambda g, pre, c: (
            f"Voxel-mirrored homotopic connectivity (VMHC) {c('zuo2010')} was computed as the Fisher z-transformed "
            "correlation between each voxel and its mirror voxel in the symmetric template, smoothed with "
            f"{fmt_param(g('fwhm', 4))} mm FWHM."),
        metrics=(MetricSpec("vmhc", _func_map("vmhc")),),
        mask=_FUNC_MASK_RULE, covariates=_MEAN_FD, rois=_FUNC_ROIS),
    AnalysisSpec(
        "seed_fc", "conn", "Seed-based functional connectivity",
        {"seeds": Param(_SEEDS, "seed names (hfsmri.conn.seeds)", "list", item="str"),
         "spheres": Param({}, "user seeds: name -> {center: [x, y, z], radius: mm} or an atlas label", "mapping"),
         "fwhm": _fwhm(6.0)},
        _methods_seed_fc,
        derive="hfsmri.conn.group:seed_metrics", needs=(FUNC_MASK,),
        mask=MaskRule(subject_masks=FUNC_MASK)),
    AnalysisSpec(
        "ica", "conn", "Group independent component analysis",
        {"n_components": Param(20, "group ICA components", "int", lo=2, hi=200),
         "variance_normalise": Param(True, "variance-normalise the dual-regression time courses", "bool"),
         "n_init": Param(10, "FastICA restarts", "int", lo=1, hi=100)},
        lambda g, pre, c: (
            f"Group independent component analysis {c('calhoun2001', 'fastica')} of temporally concatenated data "
            f"extracted {fmt_param(g('n_components', 20))} components; subject-specific maps were obtained by dual "
            f"regression {c('dualreg')} (variance normalisation: {fmt_param(g('variance_normalise', True))})."),
        derive="hfsmri.conn.group:ica_metrics", needs=(FUNC_MASK,), mask=MaskRule(subject_masks=FUNC_MASK),
        longitudinal_methods=(" For ICA, the group components estimated at baseline were kept and dual regression "
                              "was repeated on the follow-up data against them."),
        demo={"n_components": 10, "n_init": 2}),
    AnalysisSpec(
        "graph", "conn", "Graph metrics of the functional connectome",
        {"atlas": Param("aal", "atlas of the connectome nodes", "str"),
         "kind": Param("pearson", "connectivity measure", "str", choices=("pearson", "partial", "tangent")),
         "sparsity_min": Param(0.05, "lowest sparsity", lo=0.0, hi=1.0),
         "sparsity_max": Param(0.40, "highest sparsity", lo=0.0, hi=1.0),
         "sparsity_step": Param(0.01, "sparsity step", lo=1e-4, hi=1.0),
         "n_random": Param(20, "random graphs of the small-world indices", "int", lo=0, hi=10000),
         "nbs_threshold": Param(3.0, "primary t threshold of the network-based statistic", lo=0.0, hi=100.0)},
        _methods_graph,
        derive="hfsmri.conn.group:graph_metrics",
        longitudinal_methods=(" Graph metrics were compared as the change of their area under the sparsity curve "
                              "(global and nodal); edge-wise and network-based statistics are cross-sectional "
                              "only."),
        check=_check_sparsity),
)
ANALYSES: dict[str, AnalysisSpec] = {s.name: s for s in _SPECS}

#: display units of the group results (report tables, axes, colour bars): ``(analysis, metric)`` ->
#: unit, ``None`` metric = every metric of the analysis (derived ones such as ``ic-3``, ``seed-x``).
#: They follow what the participant stages write: ROI volumes in ml, thickness in mm, MD/AD/RD in
#: mm²/s (b in s/mm²), FA unitless, ALFF/fALFF, ReHo and DC standardised (z), VMHC and seed FC Fisher z.
METRIC_UNITS = {
    ("vbm", "gm"): "modulated GM (ml/ml, unitless)",
    ("thickness", None): "mm",
    ("roi_volumes", None): "ml",
    ("reho", None): "z (standardised KCC)",
    ("alff", "alff"): "z (standardised ALFF)",
    ("alff", "falff"): "z (standardised fALFF)",
    ("dc", None): "z (standardised degree)",
    ("vmhc", None): "Fisher z",
    ("seed_fc", None): "Fisher z",
    ("ica", None): "dual-regression amplitude (a.u.)",
    ("graph", None): "AUC (unitless)",
    **{(a, m): u for a in ("dti", "tbss", "dwi_rois")
       for m, u in {"fa": "FA (unitless, 0–1)", "md": "mm²/s", "ad": "mm²/s", "rd": "mm²/s"}.items()},
}
#: analyses computed from another analysis's participant maps (TBSS and the DTI ROI tables read the
#: FA/MD/AD/RD maps of dti): a measurement made on one holds for the other
SAME_MAPS_AS = {"tbss": "dti", "dwi_rois": "dti"}
#: analyses whose group inference is voxel-wise (maps; the others are ROI tables)
VOXELWISE_ANALYSES = ("vbm", "thickness", "dti", "tbss", "reho", "alff", "dc", "vmhc", "seed_fc", "ica")
#: the analysis whose group metrics are ICA components (the report shows their maps and network names)
ICA_ANALYSIS = "ica"
#: the analysis whose parameters hold the DWI preprocessing choices (motion correction) for the methods
DTI_ANALYSIS = "dti"

#: analysis -> participant stage package (``hfsmri.<stage>.participant`` writes its inputs)
STAGE_OF = {name: s.stage for name, s in ANALYSES.items()}
#: analysis -> default parameters (what ``study.resolved.yaml`` shows for parameters not given)
DEFAULTS: dict[str, dict] = {name: s.defaults() for name, s in ANALYSES.items()}


def defaults(name: str) -> dict:
    return copy.deepcopy(DEFAULTS[name])


def resolve(name: str, given: Mapping | None) -> dict:
    """Parameters of an analysis: the defaults, then ``given`` (already validated by the Study)."""
    return {**copy.deepcopy(DEFAULTS[name]), **(given or {})}


def of_stage(stage: str) -> tuple:
    """Names of the analyses of a participant stage, in registry order."""
    return tuple(n for n, s in ANALYSES.items() if s.stage == stage)


def measuring(quantity: str) -> list[str]:
    """``analysis/metric`` folders measuring a simulated quantity by default, in registry order."""
    return [f"{n}/{m.name}" for n, s in ANALYSES.items() for m in s.metrics if m.quantity == quantity]


def seed_metric(seed: str) -> str:
    """``analysis/metric`` folder of a seed's functional connectivity (``seed_fc/seed-<name>``)."""
    return f"seed_fc/seed-{seed}"


#: preprocessing parameters shared by the analyses of a modality (study.yaml ``preprocessing``)
PREPROCESSING_DEFAULTS: dict[str, dict] = {
    "anat": {"template_resolution": 2, "registration": "SyN", "brain_extraction": "template",
             "bet_margin_mm": 5.0, "longitudinal": "midspace", "profile": "standard"},
    "dwi": {"b0_threshold": 50},
    "func": {"dummy_scans": 5, "resolution": 3, "band": [0.01, 0.08], "global_signal": False,
             "scrubbing": False, "fd_scrub_threshold": 0.5, "max_mean_fd": 0.2,
             "exclude_high_motion": False, "slice_timing": "auto"},
}

#: ``voxelwise_clinical``: clinical-score correlations as voxel-wise maps for every score (true),
#: none (false: ROI correlations only), or the listed scores; ROI correlations always cover all.
#: ``familywise``: scope of the family-wise correction of the findings (``none``: per contrast;
#: ``contrasts``: over all contrasts of a metric; ``metrics``: over all contrasts of every metric of
#: an analysis, e.g. FA/MD/AD/RD), from the same permutations (hfsmri.stats.family);
#: ``min_cluster_voxels``: smaller clusters stay in the cluster table, flagged, but are no finding
#: (10 voxels: 80 mm^3 at 2 mm, 270 mm^3 at 3 mm; a single voxel is never one);
#: ``min_df_correlation``: residual df a voxel-wise correlation needs (else ROI correlations only);
#: ``variance_smoothing``: FWHM in mm of the variance smoothing of t (randomise -v; 0 = off);
#: ``roi_n_perm``: permutations of the ROI tests (at least ``n_perm``; cheap, and fine enough that
#: FDR over many ROIs is not limited by the 1/(n_perm+1) floor of the permutation p)
STATS_DEFAULTS = {"n_perm": 5000, "tfce": True, "alpha": 0.05, "cluster_forming_p": 0.001,
                  "random_seed": 0, "voxelwise_clinical": True, "familywise": "contrasts",
                  "min_cluster_voxels": 10, "min_df_correlation": 10, "variance_smoothing": 0.0,
                  "roi_n_perm": 10000}
FAMILYWISE_SCOPES = ("none", "contrasts", "metrics")


def setting(ref: str, analyses: Mapping | None, preprocessing: Mapping | None):
    """The value of ``"analyses.<a>.<p>"`` / ``"preprocessing.<stage>.<p>"`` given the requested
    analyses' parameters and the preprocessing section, defaults filled in."""
    section, name, key = ref.split(".")
    if section == "analyses":
        return resolve(name, (analyses or {}).get(name))[key]
    return {**PREPROCESSING_DEFAULTS[name], **((preprocessing or {}).get(name) or {})}[key]
