"""What a participant stage hands to the later stages of the same subject (one name per thing).

:class:`hfsmri.pipeline.ParticipantContext` carries one of each: ``ctx.anat`` (filled by the
structural stage, read by the diffusion and functional stages for the T1w -> MNI registration),
``ctx.func`` (filled by the functional stage, read by the connectivity stage) and ``ctx.dwi``
(filled by the diffusion stage). Paths are strings; a field a stage did not produce stays None.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AnatOutputs:
    """The structural stage's outputs for the other stages.

    ``to_mni_transforms``: list for ``ants.apply_transforms(fixed=MNI, moving=native)``;
    ``from_mni_transforms`` + ``from_mni_whichtoinvert``: MNI -> native; probability maps, mask and
    segmentation in native space; ``tiv_ml`` in ml; ``midspace``: the subject template of a
    longitudinal subject (or None).
    """

    t1w: str | None = None
    t1w_preproc: str | None = None
    brain_mask: str | None = None
    to_mni_transforms: list = field(default_factory=list)
    from_mni_transforms: list = field(default_factory=list)
    from_mni_whichtoinvert: list = field(default_factory=list)
    transforms_json: str | None = None
    template_resolution: float | None = None
    gm_probseg: str | None = None
    wm_probseg: str | None = None
    csf_probseg: str | None = None
    dseg: str | None = None
    tiv_ml: float | None = None
    flip: bool = False
    midspace: str | None = None
    vbm_modulated: str | None = None
    vbm_unmodulated: str | None = None
    thickness_mni: str | None = None


@dataclass
class FuncOutputs:
    """The functional stage's outputs for the connectivity stage (``tr`` in s, ``mean_fd`` in mm)."""

    clean_bold: str | None = None
    brain_mask: str | None = None
    confounds: str | None = None
    qc: str | None = None
    tr: float | None = None
    mean_fd: float | None = None


@dataclass
class DwiOutputs:
    """The diffusion stage's outputs (MNI space): tensor maps (metric -> path), mask, ROI table."""

    tensor_maps: dict = field(default_factory=dict)
    brain_mask: str | None = None
    tracts_table: str | None = None
