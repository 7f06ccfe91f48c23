"""Seed regions for seed-based functional connectivity, all resolvable offline.

Named seeds (entity ``seed-<name>``, letters and digits only):

* Harvard–Oxford subcortical (max-probability >= 25 %, :mod:`hfsmri.spatial.atlas`):
  ``amygdalaL/R``, ``thalamusL/R``, ``caudateL/R``, ``putamenL/R``, ``pallidumL/R``,
  ``accumbensL/R``.
* Striatal subregions of Di Martino et al. 2008 (Cereb Cortex 18:2735, Table 1; MNI mm), spheres
  of radius 3.5 mm: ``dc`` dorsal caudate (±13, 15, 9), ``vc`` superior ventral striatum / ventral
  caudate (±10, 15, 0), ``drp`` dorsal rostral putamen (±25, 8, 6), ``vrp`` ventral rostral putamen
  (±20, 12, −3), ``dcp`` dorsal caudal putamen (±28, 1, 3), ``vis`` inferior ventral striatum
  (nucleus accumbens, ±9, 9, −8); suffix ``L`` (x < 0) or ``R`` (x > 0).
* Anything else in study.yaml ``seed_fc.spheres``: ``{name: {"center": [x, y, z], "radius": mm}}``
  (MNI mm; ``"sphere"`` accepted for ``"center"``) or ``{name: "aal:Thalamus_L"}`` (any
  AAL / Harvard–Oxford label spec of :func:`hfsmri.spatial.atlas.region_mask`).

Affected-side naming: when the study aligns the affected side (``flip_to`` = "R" or "L"), every
subject's images are in the aligned orientation, so a lateralised seed is renamed relative to the
affected side: seeds on the ``flip_to`` side become ``...Ipsi`` and the others ``...Contra``
(``amygdalaR`` -> ``amygdalaIpsi`` with ``flip_to: R``). The same names are used for all
subjects (controls included), so group analyses compare like with like.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from hfsmri.errors import StudyError

HO_SUBCORTICAL = {
    "amygdala": "Amygdala", "thalamus": "Thalamus", "caudate": "Caudate",
    "putamen": "Putamen", "pallidum": "Pallidum", "accumbens": "Accumbens",
}

#: Di Martino et al. 2008, Table 1: right-hemisphere MNI coordinates (x mirrored for left).
DI_MARTINO_2008 = {
    "dc": ("dorsal caudate", (13.0, 15.0, 9.0)),
    "vc": ("superior ventral striatum (ventral caudate)", (10.0, 15.0, 0.0)),
    "drp": ("dorsal rostral putamen", (25.0, 8.0, 6.0)),
    "vrp": ("ventral rostral putamen", (20.0, 12.0, -3.0)),
    "dcp": ("dorsal caudal putamen", (28.0, 1.0, 3.0)),
    "vis": ("inferior ventral striatum (nucleus accumbens)", (9.0, 9.0, -8.0)),
}
DI_MARTINO_RADIUS_MM = 3.5
_NAME_RE = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Seed:
    """A seed region.

    name : entity value (letters/digits), e.g. ``amygdalaR``
    spec : ROI spec for :func:`hfsmri.spatial.atlas.region_mask` (label string or sphere dict)
    hemisphere : "L", "R" or None (midline / user seed without side)
    description : human-readable origin
    """

    name: str
    spec: object = field(compare=False)
    hemisphere: str | None = None
    description: str = ""

    @property
    def base(self) -> str:
        """Name without the hemisphere suffix (``amygdalaR`` -> ``amygdala``)."""
        if self.hemisphere and self.name.endswith(self.hemisphere):
            return self.name[: -len(self.hemisphere)]
        return self.name


def builtin_seeds() -> dict[str, Seed]:
    """All named seeds (Harvard–Oxford subcortical and Di Martino 2008 spheres), by name."""
    out: dict[str, Seed] = {}
    for key, label in HO_SUBCORTICAL.items():
        for hemi, word in (("L", "Left"), ("R", "Right")):
            out[f"{key}{hemi}"] = Seed(f"{key}{hemi}", f"ho:{word}_{label}", hemi,
                                       f"Harvard-Oxford subcortical {word}_{label} (maxprob thr25)")
    for key, (desc, (x, y, z)) in DI_MARTINO_2008.items():
        for hemi, sign in (("L", -1.0), ("R", 1.0)):
            out[f"{key}{hemi}"] = Seed(
                f"{key}{hemi}", {"sphere": [sign * x, y, z], "radius": DI_MARTINO_RADIUS_MM}, hemi,
                f"Di Martino et al. 2008 {desc}, {DI_MARTINO_RADIUS_MM} mm sphere at "
                f"({sign * x:g}, {y:g}, {z:g}) MNI mm")
    return out


def _hemisphere_of(name: str, spec) -> str | None:
    if isinstance(spec, dict):
        x = float(spec["sphere"][0])
        return "L" if x < 0 else ("R" if x > 0 else None)
    if name.endswith("L"):
        return "L"
    if name.endswith("R"):
        return "R"
    return None


def _field(where: str | None, key: str) -> str:
    """The study.yaml field of an error: ``<where>.<key>`` (``where``: the analysis' parameters)."""
    return f"{where}.{key}" if where else key


def resolve_seeds(names=(), spheres=None, where: str | None = None) -> list[Seed]:
    """Seeds requested in study.yaml (``seed_fc.seeds`` names + ``seed_fc.spheres`` mapping).

    Raises :class:`~hfsmri.errors.StudyError` naming the field for unknown names or malformed
    sphere entries.
    """
    known = builtin_seeds()
    seeds: list[Seed] = []
    for n in names or ():
        if n not in known:
            raise StudyError(f"unknown seed {n!r}; known seeds: {', '.join(sorted(known))} "
                             "(define others under seed_fc.spheres)", field=_field(where, "seeds"))
        seeds.append(known[n])
    for name, val in (spheres or {}).items():
        if not _NAME_RE.match(str(name)):
            raise StudyError(f"seed name {name!r} must contain only letters and digits",
                             field=_field(where, "spheres"))
        if isinstance(val, str):
            spec = val
        elif isinstance(val, dict):
            centre = val.get("center", val.get("centre", val.get("sphere")))
            try:
                centre = [float(c) for c in centre]
                radius = float(val.get("radius", 6.0))
            except (TypeError, ValueError):
                centre, radius = None, None
            if centre is None or len(centre) != 3 or not radius or radius <= 0:
                raise StudyError(f"seed {name!r} needs 'center: [x, y, z]' (MNI mm) and a positive "
                                 f"'radius' (mm), got {val!r}", field=_field(where, "spheres"))
            spec = {"sphere": centre, "radius": radius}
        else:
            raise StudyError(f"seed {name!r}: give a sphere {{center, radius}} or an atlas label "
                             f"like 'aal:Thalamus_L', got {val!r}", field=_field(where, "spheres"))
        hemi = _hemisphere_of(str(name), spec) if isinstance(spec, dict) else (
            "L" if str(name).endswith("L") else "R" if str(name).endswith("R") else None)
        seeds.append(Seed(str(name), spec, hemi, f"user seed {spec!r}"))
    if len({s.name for s in seeds}) != len(seeds):
        raise StudyError("seed names must be unique", field=_field(where, "seeds"))
    return seeds


def aligned_name(seed: Seed, flip_to: str | None) -> str:
    """Output name of ``seed``: unchanged without alignment; with ``flip_to`` the hemisphere
    suffix becomes ``Ipsi`` (same side as ``flip_to``) or ``Contra``."""
    if not flip_to or seed.hemisphere not in ("L", "R") or not seed.name.endswith(seed.hemisphere):
        return seed.name
    return seed.base + ("Ipsi" if seed.hemisphere == str(flip_to).upper() else "Contra")


def seed_masks(seeds, target_img, brain_mask: np.ndarray, min_voxels: int = 1,
               where: str | None = None) -> dict[str, np.ndarray]:
    """Boolean in-brain mask of each seed on ``target_img``'s grid, keyed by seed name.

    Raises :class:`~hfsmri.errors.StudyError` when a seed has fewer than ``min_voxels`` in-brain
    voxels (e.g. a sphere outside the brain or smaller than a voxel).
    """
    from hfsmri.spatial.atlas import region_mask

    brain = np.asarray(brain_mask, dtype=bool)
    out = {}
    for s in seeds:
        try:
            m = region_mask(s.spec, target_img) & brain
        except ValueError as exc:
            raise StudyError(str(exc), field=_field(where, f"seeds[{s.name}]")) from None
        if int(m.sum()) < min_voxels:
            vox = np.abs(np.diag(target_img.affine)[:3]).round(2).tolist()
            raise StudyError(f"seed {s.name} ({s.description}) has {int(m.sum())} in-brain voxels on "
                             f"the {vox} mm grid (need >= {min_voxels})", field=_field(where, "seeds"))
        out[s.name] = m
    return out
