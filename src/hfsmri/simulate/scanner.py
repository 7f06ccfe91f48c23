"""How the simulated scanner acquires and stores each image (presets, per-subject draws, grids).

The anatomy of a subject lives in MNI (template) space; :class:`~.deformation.SubjectTransform`
maps scanner (world, RAS mm) points to it. This module decides *where the head is in the scanner*
and *on which voxel grid, in which storage, with which intensity scale and type* each image is
written — everything a real scanner varies and a pipeline must not care about:

* **head pose** (``head_pose``): ``ideal`` = the old small pose (±3°, ±4 mm per axis, redrawn per
  modality); ``realistic`` = a session pose as a head lies in a coil — pitch (nodding, about x)
  SD 7° (clipped ±18°), roll SD 2.5°, yaw SD 3°, and the head's MNI origin at
  (0 ± 4, −5 ± 12, 20 ± 12) mm from the isocentre — plus a small change between the scans of a
  session (SD 1.5°, 2 mm).
* **oblique headers** (``oblique_deg``): the grid's direction cosines are rotated. With
  probability 0.6 the operator aligned the slab to the head (the grid rotation is the head
  rotation plus a planning error), else only the planning error (pitch SD 6°, roll/yaw SD 3°);
  the rotation angle is capped at ``oblique_deg`` (0 = axis-aligned grids).
* **field of view**: centred on the head (the head pose applied to a template point) with a
  positioning error of ~3-5 mm; T1w full head: 192 (L-R) × 256 (A-P) × 256 (S-I) mm as a sagittal
  3D T1w, down to the neck; T1w brain+skull: 192 × 236 × 208 mm; DWI 220 × 220 × 150 mm; BOLD
  216 × 216 × 144 mm (axial slabs).
* **storage** (``t1w_orientation``, ``epi_orientation``): the voxel axis order and directions as
  an orientation code (nibabel's axcodes, the third letter is the slice axis): sagittal ``PIR``,
  ``ASL``; coronal ``LIP``, ``RSP``; axial ``LPS``, ``RAS``, ``LAS``. EPI (DWI, BOLD) are axial:
  ``LAS`` (dcm2niix), ``LPS``, ``RAS``, ``LPI`` (slices stored top-down).
* **voxel size** (``anisotropy``): relative voxel size along the stored axes (i, j, slice), times
  the requested resolution: T1w (1, 1, 1.2) (ADNI-like 1 × 1 × 1.2 mm), (0.9375, 0.9375, 1.2),
  (1, 1, 1), (0.98, 0.98, 1); DWI (1, 1, 1), (1, 1, 1.1); BOLD (1, 1, 1.1), (1, 1, 1.2), (1, 1, 1).
* **data type and scale** (``t1w_dtype``): ``int16`` with WM = 1000 (the old fixed scale), or
  ``mixed``: int16 (50 %), uint16 (15 %), float32 (20 %), uint8 (15 %), with a receiver scale:
  WM log-uniform in 300-3000 (integers), 1-2000 (float32), 100-140 (uint8, as FreeSurfer-like
  exports). DWI and BOLD stay int16.
* **bias field** (``bias``): ``None`` = the old random quadratic (about ±12 %); a number ``a`` =
  a smooth multiplicative field ``exp(c·p(y))``, ``p`` a random 2nd-order polynomial of position,
  scaled so that its 99th / 1st percentile over the head is exactly ``(1 + a) / (1 - a)`` and its
  median is 1 (``a = 0.2``: about ±20 %, a 3 T head coil before N4). EPI get ``0.75 a``.
* **slice timing** (``slice_timing``, BOLD): ``none`` (every slice at the volume time, as
  before), ``ascending`` / ``descending`` (foot-to-head / head-to-foot), ``interleaved`` (Siemens
  style: odd slices first when the count is odd, even first when it is even, counted from the
  foot), ``mixed`` (one of the three per subject). The signal of slice k is the continuous signal at
  ``t_vol + SliceTiming[k]`` and ``SliceTiming`` is written to the sidecar (index = stored slice k).

Presets: ``ideal`` reproduces the old simulator exactly (axis-aligned RAS T1w, LAS DWI, RAS BOLD,
int16, legacy bias, no slice timing, brain-and-skull head); ``realistic`` turns everything on
(full head with face and neck, realistic pose, ≤ 15° oblique headers, mixed storage, voxel
shapes and types, ±20 % bias, mixed slice orders). Per-subject choices ("mixed") deliberately
vary the protocol between subjects, as a multi-protocol stress test; give a fixed value for a
single-protocol study. Every choice is drawn from its own random stream, so changing the header
options never changes a subject's anatomy, pose or signal draws.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
from scipy.spatial.transform import Rotation

from hfsmri.errors import HfsmriError

#: preset of ``simulate_study`` (unit tests, power analysis: fast, exact positions)
DEFAULT_PRESET = "ideal"
#: preset of ``hfsmri simulate`` and ``hfsmri demo`` (what a user gets)
USER_PRESET = "realistic"

T1W_ORIENTATIONS = {"PIR": 0.3, "ASL": 0.3, "LPS": 0.1, "RAS": 0.1, "LAS": 0.05, "LIP": 0.1, "RSP": 0.05}
EPI_ORIENTATIONS = {"LAS": 0.4, "LPS": 0.2, "RAS": 0.2, "LPI": 0.2}
VOXEL_SHAPES = {
    "anat": ((1.0, 1.0, 1.2), (0.9375, 0.9375, 1.2), (1.0, 1.0, 1.0), (0.98, 0.98, 1.0)),
    "dwi": ((1.0, 1.0, 1.0), (1.0, 1.0, 1.1)),
    "func": ((1.0, 1.0, 1.1), (1.0, 1.0, 1.2), (1.0, 1.0, 1.0)),
}
T1W_DTYPES = {"int16": 0.5, "uint16": 0.15, "float32": 0.2, "uint8": 0.15}
DTYPE_RANGE = {"int16": (0, 32767), "uint16": (0, 65535), "uint8": (0, 255), "float32": (0.0, np.inf)}
#: WM intensity of the old fixed scale (and of a fixed dtype); uint8 images put WM at 120
WM_LEVEL = 1000.0
WM_LEVEL_UINT8 = 120.0
SLICE_ORDERS = ("ascending", "descending", "interleaved")

#: field of view (mm) along the grid's own L-R, A-P, S-I axes, and its centre (template MNI mm)
FOV_MM = {"anat_full": (192.0, 256.0, 256.0), "anat": (192.0, 236.0, 208.0),
          "dwi": (220.0, 220.0, 150.0), "func": (216.0, 216.0, 144.0)}
FOV_CENTRE_MNI = {"anat_full": (0.0, -15.0, -20.0), "anat": (0.0, -14.0, 8.0),
                  "dwi": (0.0, -18.0, 8.0), "func": (0.0, -18.0, 8.0)}
FOV_ERROR_MM = {"anat_full": (3.0, 4.0, 5.0), "anat": (3.0, 3.0, 3.0), "dwi": (2.0, 3.0, 3.0),
                "func": (2.0, 3.0, 3.0)}

#: realistic head pose in the coil: rotation SD (deg) about x (pitch), y (roll), z (yaw) and clip
POSE_ROT_SD_DEG = (7.0, 2.5, 3.0)
POSE_ROT_MAX_DEG = (18.0, 8.0, 10.0)
#: where the head's MNI origin sits relative to the isocentre (mean, SD, mm)
POSE_SHIFT_MEAN_MM = (0.0, -5.0, 20.0)
POSE_SHIFT_SD_MM = (4.0, 12.0, 12.0)
#: head movement between the scans of one session (SD)
SCAN_ROT_SD_DEG = 1.5
SCAN_SHIFT_SD_MM = 2.0
#: slab planning: probability that the slab follows the head, planning error SD (pitch, roll, yaw)
P_SLAB_FOLLOWS_HEAD = 0.6
PLAN_ERR_SD_DEG = (6.0, 3.0, 3.0)

_AXIS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


@dataclass(frozen=True)
class ScannerSpec:
    """What the simulated scanner does (see the module doc for every field)."""

    preset: str = "ideal"
    full_head: bool = False
    head_pose: str = "ideal"
    oblique_deg: float = 0.0
    anisotropy: object = "none"          # "none" | "mixed" | (i, j, k) relative voxel size
    t1w_orientation: str = "RAS"         # code | "mixed"
    epi_orientation: str = "legacy"      # "legacy" (DWI LAS, BOLD RAS) | code | "mixed"
    t1w_dtype: str = "int16"             # int16 (WM 1000) | uint16 | uint8 | float32 | "mixed"
    bias: float | None = None            # None = legacy quadratic; else half-range (0.2 = ±20 %)
    slice_timing: str = "none"           # none | ascending | descending | interleaved | mixed

    def legacy_grid(self, modality: str) -> bool:
        """True when ``modality`` is written exactly as the old simulator did (axis-aligned grid
        fixed in the scanner, isotropic voxels, RAS T1w / LAS DWI / RAS BOLD)."""
        if self.head_pose != "ideal" or self.oblique_deg > 0 or self.anisotropy != "none":
            return False
        if modality == "anat":
            return not self.full_head and self.t1w_orientation == "RAS"
        return self.epi_orientation == "legacy"

    def as_dict(self) -> dict:
        d = asdict(self)
        if isinstance(d["anisotropy"], tuple):
            d["anisotropy"] = list(d["anisotropy"])
        return d


PRESETS = {
    "ideal": ScannerSpec(),
    "realistic": ScannerSpec(preset="realistic", full_head=True, head_pose="realistic", oblique_deg=15.0,
                             anisotropy="mixed", t1w_orientation="mixed", epi_orientation="mixed",
                             t1w_dtype="mixed", bias=0.2, slice_timing="mixed"),
}


def _fail(key, msg):
    raise HfsmriError(f"scanner.{key}: {msg}", field=f"scanner.{key}")


def _check_code(key, code, slice_axis_si=False):
    code = str(code).upper()
    axes = sorted(_AXIS[c][0] for c in code if c in _AXIS) if len(code) == 3 else []
    if len(code) != 3 or any(c not in _AXIS for c in code) or axes != [0, 1, 2]:
        _fail(key, f"{code!r} is not an orientation code (three letters, one of R/L, A/P, S/I each, e.g. RAS, LPS, PIR)")
    if slice_axis_si and code[2] not in "SI":
        _fail(key, f"{code!r}: EPI images are axial, the third (slice) axis must be S or I")
    return code


def resolve_scanner(scanner=None) -> ScannerSpec:
    """A :class:`ScannerSpec` from a preset name, a dict (``{"preset": ..., <field>: value}``) or a
    spec. Unknown keys or bad values raise :class:`HfsmriError` naming ``scanner.<key>``."""
    if scanner is None:
        scanner = DEFAULT_PRESET
    if isinstance(scanner, ScannerSpec):
        spec, over = scanner, {}
    elif isinstance(scanner, str):
        spec, over = None, {"preset": scanner}
    elif isinstance(scanner, dict):
        spec, over = None, dict(scanner)
    else:
        raise HfsmriError(f"scanner must be a preset name, a mapping or a ScannerSpec, got {type(scanner).__name__}",
                          field="scanner")
    if spec is None:
        name = str(over.pop("preset", DEFAULT_PRESET))
        if name not in PRESETS:
            _fail("preset", f"unknown preset {name!r}; use one of {sorted(PRESETS)}")
        spec = PRESETS[name]
        names = {f.name for f in fields(ScannerSpec)} - {"preset"}
        bad = sorted(set(over) - names)
        if bad:
            _fail(bad[0], f"unknown option; known: {sorted(names)}")
        over = {k: v for k, v in over.items() if v is not None or k == "bias"}
        spec = replace(spec, **over)
    return _validated(spec)


def _validated(spec: ScannerSpec) -> ScannerSpec:
    s = spec
    if s.head_pose not in ("ideal", "realistic"):
        _fail("head_pose", f"must be ideal or realistic, got {s.head_pose!r}")
    try:
        obl = float(s.oblique_deg)
    except (TypeError, ValueError):
        _fail("oblique_deg", f"must be a number of degrees, got {s.oblique_deg!r}")
    if not (0.0 <= obl <= 45.0):
        _fail("oblique_deg", f"must be between 0 and 45 degrees, got {obl}")
    aniso = s.anisotropy
    if isinstance(aniso, str) and "," in aniso:
        aniso = aniso.split(",")
    if isinstance(aniso, (list, tuple)):
        try:
            aniso = tuple(float(v) for v in aniso)
        except (TypeError, ValueError):
            _fail("anisotropy", f"must be none, mixed or three relative voxel sizes, got {s.anisotropy!r}")
        if len(aniso) != 3 or not all(0.5 <= v <= 2.0 for v in aniso):
            _fail("anisotropy", f"three relative voxel sizes between 0.5 and 2 are needed, got {s.anisotropy!r}")
    elif aniso not in ("none", "mixed"):
        _fail("anisotropy", f"must be none, mixed or three relative voxel sizes, got {aniso!r}")
    t1o = s.t1w_orientation if s.t1w_orientation == "mixed" else _check_code("t1w_orientation", s.t1w_orientation)
    epo = s.epi_orientation
    if epo not in ("legacy", "mixed"):
        epo = _check_code("epi_orientation", epo, slice_axis_si=True)
    if s.t1w_dtype not in (*T1W_DTYPES, "mixed"):
        _fail("t1w_dtype", f"must be one of {sorted(T1W_DTYPES)} or mixed, got {s.t1w_dtype!r}")
    bias = s.bias
    if isinstance(bias, str):
        if bias.lower() in ("legacy", "none"):
            bias = None
        else:
            try:
                bias = float(bias)
            except ValueError:
                _fail("bias", f"must be legacy or a fraction (0.2 = ±20 %), got {s.bias!r}")
    if bias is not None:
        bias = float(bias)
        if not (0.0 <= bias < 0.6):
            _fail("bias", f"must be between 0 and 0.6 (0.2 = ±20 %), got {bias}")
    if s.slice_timing not in ("none", "mixed", *SLICE_ORDERS):
        _fail("slice_timing", f"must be none, mixed or one of {SLICE_ORDERS}, got {s.slice_timing!r}")
    return replace(s, oblique_deg=obl, anisotropy=aniso, t1w_orientation=t1o, epi_orientation=epo,
                   bias=bias, full_head=bool(s.full_head))


# ---------------------------------------------------------------- head pose
def session_pose(spec: ScannerSpec, rng: np.random.Generator):
    """(rotation 3x3, translation mm) of the head in the scanner for one session (realistic pose)."""
    sd = np.asarray(POSE_ROT_SD_DEG)
    ang = np.clip(rng.normal(0.0, sd), -np.asarray(POSE_ROT_MAX_DEG), POSE_ROT_MAX_DEG)
    rot = Rotation.from_euler("xyz", ang, degrees=True).as_matrix()
    shift = rng.normal(POSE_SHIFT_MEAN_MM, POSE_SHIFT_SD_MM)
    return rot, shift


def scan_pose(session_rot, session_shift, rng: np.random.Generator):
    """The session pose moved slightly for one scan (the head moves between scans)."""
    d = Rotation.from_euler("xyz", rng.normal(0.0, SCAN_ROT_SD_DEG, 3), degrees=True).as_matrix()
    return d @ session_rot, np.asarray(session_shift) + rng.normal(0.0, SCAN_SHIFT_SD_MM, 3)


# ---------------------------------------------------------------- acquisition of one image
@dataclass
class Acquisition:
    """The grid and storage of one image of one subject (``legacy``: the old fixed grid)."""

    modality: str
    shape: tuple
    affine: np.ndarray
    orientation: str
    zooms: tuple
    oblique_deg: float
    dtype: str = "int16"
    wm_level: float = WM_LEVEL
    bias: float | None = None
    slice_order: str | None = None
    slice_timing: list | None = field(default=None)
    legacy: bool = False

    @property
    def voxel_mm(self) -> float:
        """Edge of the cube of the same volume (mm): the partial-volume scale of this grid."""
        return float(np.prod(self.zooms) ** (1.0 / 3.0))

    def describe(self) -> dict:
        """Columns for ground_truth/subjects.tsv (prefix added by the caller)."""
        d = {"axcodes": self.orientation, "voxel_mm": "x".join(f"{z:g}" for z in self.zooms),
             "oblique_deg": round(self.oblique_deg, 3)}
        if self.modality == "anat":
            d.update({"dtype": self.dtype, "wm_level": round(self.wm_level, 4),
                      "bias_halfrange": "legacy" if self.bias is None else self.bias})
        if self.modality == "func":
            d["slice_order"] = self.slice_order or "none"
        return d


def orientation_matrix(code: str) -> np.ndarray:
    """3x3 matrix whose column i is the unit world (RAS) direction of stored voxel axis i."""
    m = np.zeros((3, 3))
    for i, c in enumerate(code):
        ax, sign = _AXIS[c]
        m[ax, i] = sign
    return m


def grid_affine(fov_mm, centre_world, rotation, code: str, zooms):
    """``(shape, affine)`` of a grid covering a box ``fov_mm`` (L-R, A-P, S-I, in the rotated grid
    frame) centred on ``centre_world``, stored in ``code`` order with voxel sizes ``zooms`` (along
    the stored axes)."""
    p = orientation_matrix(code)
    zooms = np.asarray(zooms, float)
    ext = np.abs(p.T) @ np.asarray(fov_mm, float)      # box extent along each stored axis
    shape = tuple(int(max(1, round(e / z))) for e, z in zip(ext, zooms))
    lin = np.asarray(rotation, float) @ p @ np.diag(zooms)
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = np.asarray(centre_world, float) - lin @ ((np.asarray(shape) - 1) / 2.0)
    return shape, affine


def _choice(rng, table):
    keys = list(table)
    p = np.asarray([table[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def grid_rotation(spec: ScannerSpec, head_rotation, rng: np.random.Generator) -> np.ndarray:
    """Direction-cosine rotation of a grid: the slab follows the head (probability
    :data:`P_SLAB_FOLLOWS_HEAD`) plus a planning error, capped at ``spec.oblique_deg``."""
    follow = rng.random() < P_SLAB_FOLLOWS_HEAD
    err = Rotation.from_euler("xyz", rng.normal(0.0, PLAN_ERR_SD_DEG), degrees=True)
    if spec.oblique_deg <= 0:
        return np.eye(3)
    rot = (Rotation.from_matrix(head_rotation) * err) if follow else err
    rv = rot.as_rotvec()
    ang = np.linalg.norm(rv)
    cap = np.deg2rad(spec.oblique_deg)
    if ang > cap:
        rv *= cap / ang
    return Rotation.from_rotvec(rv).as_matrix()


def slice_times(n_slices: int, tr: float, order: str, code: str) -> list:
    """BIDS ``SliceTiming`` (s) of each *stored* slice k for an acquisition ``order`` counted from
    the foot (ascending = inferior to superior); ``code`` tells whether stored k runs I->S or S->I."""
    phys = list(range(n_slices))  # physical slice index from the foot
    if order == "ascending":
        acq = phys
    elif order == "descending":
        acq = phys[::-1]
    elif order == "interleaved":
        first = 0 if n_slices % 2 else 1
        acq = phys[first::2] + phys[1 - first::2]
    else:
        raise ValueError(order)
    t_phys = np.empty(n_slices)
    t_phys[np.asarray(acq)] = np.arange(n_slices) * (tr / n_slices)
    stored = t_phys if code[2] == "S" else t_phys[::-1]
    return [round(float(t), 6) for t in stored]


def draw_acquisition(spec: ScannerSpec, modality: str, resolution_mm: float, transform,
                     rng: np.random.Generator, tr: float | None = None) -> Acquisition:
    """Draw the grid/storage of one image. ``transform``: the subject's
    :class:`~.deformation.SubjectTransform` for this scan (its rigid part places the FOV);
    ``rng``: the acquisition's own random stream (never the anatomy's)."""
    from .deformation import native_grid

    r = float(resolution_mm)
    if spec.legacy_grid(modality):
        code = {"anat": "RAS", "dwi": "LAS", "func": "RAS"}[modality]
        shape, affine = native_grid(r, "head" if modality == "anat" else "brain", code)
        acq = Acquisition(modality, shape, affine, code, (r, r, r), 0.0, legacy=True)
    else:
        if modality == "anat":
            code = _choice(rng, T1W_ORIENTATIONS) if spec.t1w_orientation == "mixed" else spec.t1w_orientation
        elif spec.epi_orientation == "mixed":
            code = _choice(rng, EPI_ORIENTATIONS)
        else:
            code = spec.epi_orientation if spec.epi_orientation != "legacy" else ("LAS" if modality == "dwi" else "RAS")
        if spec.anisotropy == "mixed":
            shapes = VOXEL_SHAPES[modality]
            rel = shapes[int(rng.integers(len(shapes)))]
        elif spec.anisotropy == "none":
            rel = (1.0, 1.0, 1.0)
        else:
            rel = spec.anisotropy
        zooms = tuple(round(r * v, 4) for v in rel)
        rot = grid_rotation(spec, transform.rotation, rng)
        key = "anat_full" if (modality == "anat" and spec.full_head) else modality
        centre = transform.mni_to_native_rigid(np.asarray([FOV_CENTRE_MNI[key]]))[0]
        centre = centre + np.clip(rng.normal(0.0, FOV_ERROR_MM[key]), -10.0, 10.0)
        shape, affine = grid_affine(FOV_MM[key], centre, rot, code, zooms)
        angle = float(np.rad2deg(np.linalg.norm(Rotation.from_matrix(rot).as_rotvec())))
        acq = Acquisition(modality, shape, affine, code, zooms, angle)
    if modality == "anat":
        acq.bias = spec.bias
        dtype = _choice(rng, T1W_DTYPES) if spec.t1w_dtype == "mixed" else spec.t1w_dtype
        acq.dtype = dtype
        if spec.t1w_dtype == "mixed":
            if dtype == "uint8":
                acq.wm_level = float(rng.uniform(100.0, 140.0))
            else:
                lo, hi = (1.0, 2000.0) if dtype == "float32" else (300.0, 3000.0)
                acq.wm_level = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            acq.wm_level = WM_LEVEL_UINT8 if dtype == "uint8" else WM_LEVEL
    else:
        acq.bias = None if spec.bias is None else 0.75 * spec.bias
    if modality == "func" and spec.slice_timing != "none":
        order = SLICE_ORDERS[int(rng.integers(3))] if spec.slice_timing == "mixed" else spec.slice_timing
        acq.slice_order = order
        acq.slice_timing = slice_times(acq.shape[2], float(tr), order, acq.orientation)
    return acq


# ---------------------------------------------------------------- intensities and storage
@dataclass
class BiasField:
    """Smooth multiplicative bias ``exp(c (p(y) - p50))`` of world position: ``p`` a random
    quadratic polynomial of ``(y - centre) / 100 mm`` (standard-normal coefficients), ``c`` and
    ``p50`` set (by :meth:`random`) so that over the head the 99th / 1st percentile ratio is exactly
    ``(1 + halfrange) / (1 - halfrange)`` and the median is 1."""

    centre: np.ndarray
    coef: np.ndarray
    c: float
    p50: float

    def poly(self, points) -> np.ndarray:
        q = (np.asarray(points, np.float32) - np.asarray(self.centre, np.float32)) / np.float32(100.0)
        k = self.coef
        x, y, z = q[:, 0], q[:, 1], q[:, 2]
        return (k[0] * x + k[1] * y + k[2] * z + k[3] * x * y + k[4] * x * z + k[5] * y * z
                + k[6] * x * x + k[7] * y * y + k[8] * z * z)

    def __call__(self, points) -> np.ndarray:
        return np.exp(np.float32(self.c) * (self.poly(points) - np.float32(self.p50))).astype(np.float32)

    @classmethod
    def random(cls, rng: np.random.Generator, centre, halfrange: float, head_points) -> "BiasField":
        """Draw the polynomial and normalise it over ``head_points`` (n, 3) world mm."""
        f = cls(np.asarray(centre, np.float32), rng.standard_normal(9).astype(np.float32), 0.0, 0.0)
        p1, p50, p99 = np.percentile(f.poly(head_points), [1, 50, 99])
        f.p50 = float(p50)
        if halfrange > 0 and p99 - p1 > 1e-12:
            f.c = float(np.log((1.0 + halfrange) / (1.0 - halfrange)) / (p99 - p1))
        return f


def coarse_grid(shape, affine, factor: int = 4):
    """``(shape, affine)`` of a grid ``factor`` times coarser than ``(shape, affine)`` with the
    same direction cosines, covering it (used to store smooth ground-truth fields compactly)."""
    a = np.asarray(affine, float)
    out = a.copy()
    out[:3, :3] = a[:3, :3] * factor
    out[:3, 3] = a[:3, :3] @ np.full(3, (factor - 1) / 2.0) + a[:3, 3]
    return tuple(int(np.ceil(n / factor)) for n in shape), out


def store(values: np.ndarray, dtype: str):
    """Round and clip relative intensities already scaled to the stored range into ``dtype``."""
    lo, hi = DTYPE_RANGE[dtype]
    if dtype == "float32":
        return np.clip(values, lo, None).astype(np.float32)
    return np.clip(np.rint(values), lo, hi).astype(dtype)


# ---------------------------------------------------------------- b-vectors (FSL / BIDS convention)
def _fsl_flip(affine) -> np.ndarray:
    return np.diag([-1.0, 1.0, 1.0]) if np.linalg.det(np.asarray(affine)[:3, :3]) > 0 else np.eye(3)


def direction_cosines(affine) -> np.ndarray:
    a = np.asarray(affine, float)[:3, :3]
    return a / np.linalg.norm(a, axis=0)


def bvecs_to_world(bvecs: np.ndarray, affine) -> np.ndarray:
    """(n, 3) FSL/BIDS b-vectors (image axes; x negated when det(affine) > 0, as FSL, MRtrix
    ``-fslgrad`` and BIDS define them) -> (n, 3) unit directions in world (RAS) mm space."""
    return np.asarray(bvecs, float) @ (direction_cosines(affine) @ _fsl_flip(affine)).T


def world_to_bvecs(g_world: np.ndarray, affine) -> np.ndarray:
    """Inverse of :func:`bvecs_to_world` (direction cosines are orthonormal for simulated grids)."""
    return np.asarray(g_world, float) @ (direction_cosines(affine) @ _fsl_flip(affine))
