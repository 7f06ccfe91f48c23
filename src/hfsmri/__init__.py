"""hfsmri: one-command MRI analysis for clinical case-control studies.

First use: hemifacial spasm (HFS) patients vs healthy controls. Structural (VBM, thickness,
ROI volumes), diffusion (DTI, TBSS, tract ROIs) and resting-state fMRI (ReHo, ALFF/fALFF, DC,
VMHC, seed FC, ICA, graph) analyses, permutation statistics and an HTML report.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
