"""hfsmri.conn — functional connectivity: seed FC, ROI connectomes, group ICA + dual regression.

Kernels (pure numpy): :mod:`.seedfc`, :mod:`.connectome`, :mod:`.dual_regression`, :mod:`.ica`;
seed definitions: :mod:`.seeds`; stages: :mod:`.participant`, :mod:`.group`. Graph metrics and
NBS live in :mod:`hfsmri.graph`.
"""
