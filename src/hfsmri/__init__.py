"""hfsmri: one-command MRI analysis for clinical case-control studies.

First use: hemifacial spasm (HFS) patients vs healthy controls. Structural (VBM, thickness,
ROI volumes), diffusion (DTI, TBSS, tract ROIs) and resting-state fMRI (ReHo, ALFF/fALFF, DC,
VMHC, seed FC, ICA, graph) analyses, permutation statistics and an HTML report.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

# numba's kernel cache goes to the hfsmri cache folder (not the installed package tree); this must
# happen before any hfsmri kernel is compiled, i.e. here (see hfsmri.cache)
from .cache import configure_numba as _configure_numba  # noqa: E402

_configure_numba()
