"""hfsmri.simulate: a virtual hemifacial-spasm cohort (raw BIDS) with planted effects and ground truth.

>>> from hfsmri.simulate import simulate_study
>>> simulate_study("sim", n_patients=10, n_controls=10, seed=1)   # doctest: +SKIP

See ``docs/simulator.md`` for the model, the effects file format and the ground truth layout.
"""
from .dataset import simulate_study
from .effects import EffectSet, Effect, load_effects

__all__ = ["simulate_study", "load_effects", "EffectSet", "Effect"]
