"""Figures of the report (matplotlib Agg + nilearn plotting): a full-size PNG on disk, a thumbnail embedded.

Every function returns a :class:`Figure`: the full-size PNG is written to ``path`` (under
``report/figures/``) and linked from the report; :attr:`Figure.png` is a small thumbnail (at most
:data:`THUMB_PX` wide, reduced to a :data:`THUMB_COLOURS`-colour palette) that
:meth:`Figure.data_uri` embeds, so that the HTML stands alone and stays small (docs/report.md has the
measured sizes). Colour bars carry the statistic's name and unit.
"""
from __future__ import annotations

import base64
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

GROUP_COLORS = {"patient": "#c0392b", "control": "#2471a3"}
DPI = 90
THUMB_PX = 760          # embedded thumbnail: largest width (px)
THUMB_COLOURS = 64      # embedded thumbnail: palette size


@dataclass
class Figure:
    """``path``: the PNG written for the report; ``png``: the embedded thumbnail bytes; ``source``:
    the full-size image the thumbnail links to (default ``path``)."""

    path: Path
    png: bytes
    caption: str = ""
    source: Path | None = None

    @property
    def full(self) -> Path:
        return self.source if self.source is not None else self.path

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def safe_name(*parts) -> str:
    """File-name-safe join of ``parts`` (letters, digits, ``-``, ``_``)."""
    return "_".join(re.sub(r"[^A-Za-z0-9_-]+", "", str(p)) or "x" for p in parts)


def shrink(png: bytes, max_px: int = THUMB_PX, colours: int = THUMB_COLOURS) -> bytes:
    """PNG bytes reduced to at most ``max_px`` wide/high and a ``colours``-colour adaptive palette."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im = im.convert("RGB")
        im.thumbnail((max_px, max_px))
        im = im.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def save(fig, path: Path, caption: str = "", dpi: int = DPI) -> Figure:
    """Write the full-size PNG to ``path``; the returned Figure embeds its thumbnail."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    png = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return Figure(path=path, png=shrink(png), caption=caption)


def thumbnail(src: Path, dest: Path, max_px: int = 480, caption: str = "",
              colours: int = THUMB_COLOURS) -> Figure | None:
    """Down-scaled palette copy of a PNG (QC overlays) at ``dest``, linking to ``src``; None if
    ``src`` cannot be read."""
    try:
        png = shrink(Path(src).read_bytes(), max_px, colours)
    except Exception:
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(png)
    return Figure(path=dest, png=png, caption=caption, source=Path(src))


#: atlas of the peak label by the analysis' participant stage: white-matter analyses (DTI, TBSS)
#: use the Jülich atlas, whose WM tract labels (``WM_*``) are the tract atlas bundled offline (JHU
#: is not bundled: nothing is downloaded at run time); the others AAL2
PEAK_ATLAS = {"dwi": "juelich"}
WM_SEARCH_MM = 6.0   # a WM peak outside every WM_ label: the nearest WM_ label within this radius


def _wm_label(xyz: np.ndarray) -> str:
    """Jülich WM tract label at ``xyz`` (MNI mm), else the nearest one within :data:`WM_SEARCH_MM`
    (with "near"), else the Jülich label there, else ""."""
    from hfsmri.spatial.atlas import label_at

    here = str(label_at("juelich", xyz[None])[0])
    if here.startswith("WM_"):
        return here
    r = int(WM_SEARCH_MM // 2)
    offs = np.array([(i, j, k) for i in range(-r, r + 1) for j in range(-r, r + 1) for k in range(-r, r + 1)],
                    float) * 2.0
    offs = offs[(offs ** 2).sum(1) <= WM_SEARCH_MM ** 2]
    offs = offs[np.argsort((offs ** 2).sum(1), kind="stable")]
    labs = label_at("juelich", xyz[None] + offs)
    for lab in labs:
        if str(lab).startswith("WM_"):
            return f"near {lab}"
    return here


def peak_labels(xyz_mm, stage: str | None = None) -> list[str]:
    """Atlas label at MNI mm points (:data:`PEAK_ATLAS` by participant stage; "" outside, or when
    the atlas is unavailable)."""
    xyz = np.atleast_2d(np.asarray(xyz_mm, dtype=float))
    try:
        from hfsmri.spatial.atlas import label_at

        if PEAK_ATLAS.get(stage) == "juelich":
            return [_wm_label(p) for p in xyz]
        return [str(s) for s in label_at("aal", xyz)]
    except Exception:
        return [""] * len(xyz)


def _background(img):
    try:
        from hfsmri.spatial.templates import load_template

        res = float(np.round(np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)).mean()))
        return load_template("T1", resolution_mm=res if 1 <= res <= 3 else 2)
    except Exception:
        from nilearn import datasets

        return datasets.load_mni152_template(resolution=2)


def significant_map(stat_path: Path | None, logp_path: Path, threshold: float):
    """Image of the statistic (t if available, else −log10 p) where −log10 p > ``threshold``, else 0."""
    limg = nib.load(str(logp_path))
    logp = np.asarray(limg.dataobj, dtype=np.float32).reshape(limg.shape[:3])
    sig = logp > threshold
    vals = logp
    if stat_path is not None:
        simg = nib.load(str(stat_path))
        if simg.shape[:3] == limg.shape[:3]:
            vals = np.asarray(simg.dataobj, dtype=np.float32).reshape(limg.shape[:3])
    out = np.where(sig, vals, 0).astype(np.float32)
    return nib.Nifti1Image(out, limg.affine), int(sig.sum())


def _label_colorbar(display, label: str) -> None:
    cbar = getattr(display, "_cbar", None)
    if cbar is not None and label:
        cbar.set_label(label, fontsize=8)


def brain_figures(stat_img, path_stem: Path, title: str, negative: bool = False,
                  underlay_img=None, cbar_label: str = "|t|") -> list[Figure]:
    """Glass brain (lyrz) and an axial slice mosaic of a thresholded statistic image; the colour
    bars are labelled ``cbar_label``."""
    from nilearn import plotting

    data = np.asarray(stat_img.dataobj)
    vmax = float(np.abs(data).max()) or 1.0
    nz = np.abs(data[data != 0])
    thr = float(nz.min()) * 0.999 if nz.size else 0.0
    cmap = "Blues" if negative else "Reds"
    plot_img = nib.Nifti1Image(np.abs(data).astype(np.float32), stat_img.affine)
    figs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plt.figure(figsize=(11, 2.8))
        d = plotting.plot_glass_brain(plot_img, figure=fig, display_mode="lyrz", colorbar=True, cmap=cmap,
                                      threshold=thr, vmin=0, vmax=vmax, plot_abs=False, title=title)
        _label_colorbar(d, cbar_label)
        figs.append(save(fig, path_stem.with_name(path_stem.name + "_glassbrain.png"),
                         f"{title}: glass brain"))
        d.close()
        fig = plt.figure(figsize=(12, 2.4))
        bg = _background(stat_img)
        d = plotting.plot_stat_map(plot_img, bg_img=bg, figure=fig, display_mode="z", cut_coords=7,
                                   threshold=thr, vmax=vmax, cmap=cmap, colorbar=True, black_bg=False,
                                   draw_cross=False, annotate=True)
        _label_colorbar(d, cbar_label)
        if underlay_img is not None:
            try:
                d.add_contours(underlay_img, levels=[0.5], colors=["#27ae60"], linewidths=0.6)
            except Exception:
                pass
        figs.append(save(fig, path_stem.with_name(path_stem.name + "_slices.png"), f"{title}: axial slices"))
        d.close()
    return figs


def map_figure(img_path, path: Path, title: str, cbar_label: str = "value", volume: int | None = None
               ) -> Figure | None:
    """Glass brain of an auxiliary map (e.g. TBSS skeleton; ``volume``: one volume of a 4D file such
    as the ICA group components); ``img_path`` may be a path or an image."""
    from nilearn import plotting

    try:
        img = img_path if hasattr(img_path, "dataobj") else nib.load(str(img_path))
        if img.ndim > 3 and volume is None:
            return None
        data = np.asarray(img.dataobj[..., volume] if volume is not None else img.dataobj, dtype=np.float32)
        if not np.any(data):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = plt.figure(figsize=(11, 2.8))
            d = plotting.plot_glass_brain(nib.Nifti1Image(data, img.affine), figure=fig, display_mode="lyrz",
                                          colorbar=True, plot_abs=False, title=title, cmap="RdBu_r")
            _label_colorbar(d, cbar_label)
            f = save(fig, path, title)
            d.close()
        return f
    except Exception:
        return None


def group_strip_plot(values: pd.DataFrame, groups: pd.Series, path: Path, title: str,
                     annotations: dict | None = None, max_panels: int = 24, ylabel: str = "") -> Figure:
    """Box + strip plot of each column of ``values`` by group (``groups``: label -> patient/control);
    ``ylabel``: the unit, on the first panel of each row."""
    cols = list(values.columns)[:max_panels]
    n = len(cols)
    ncol = min(n, 6)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.1 * ncol, 2.4 * nrow), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, col in zip(axes.ravel(), cols):
        data = []
        for gi, g in enumerate(("control", "patient")):
            v = pd.to_numeric(values.loc[groups[groups == g].index.intersection(values.index), col],
                              errors="coerce").dropna().to_numpy()
            data.append(v)
            ax.scatter(gi + rng.uniform(-0.12, 0.12, len(v)), v, s=10, color=GROUP_COLORS[g], alpha=0.8, zorder=3)
        ax.boxplot(data, positions=[0, 1], widths=0.5, showfliers=False,
                   medianprops={"color": "black"}, boxprops={"color": "#555"})
        ax.set_xticks([0, 1], ["control", "patient"], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        t = str(col) if len(str(col)) <= 28 else str(col)[:26] + "…"
        ax.set_title(t, fontsize=8)
        if ylabel and list(axes.ravel()).index(ax) % ncol == 0:
            ax.set_ylabel(ylabel, fontsize=7)
        if annotations and col in annotations:
            ax.text(0.5, 0.98, annotations[col], transform=ax.transAxes, ha="center", va="top", fontsize=6.5,
                    bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"})
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path, title)


def scatter_plot(x, y, path: Path, xlabel: str, ylabel: str, title: str) -> tuple[Figure, dict]:
    """Scatter with least-squares line; Pearson r, 95 % CI (Fisher z) and p in the title."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    info = {"n": int(ok.sum()), "r": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}
    fig, ax = plt.subplots(figsize=(3.6, 3.0))
    ax.scatter(x, y, s=14, color=GROUP_COLORS["patient"])
    if len(x) >= 4 and np.ptp(x) > 0 and np.ptp(y) > 0:
        res = stats.pearsonr(x, y)
        ci = res.confidence_interval(0.95)
        info.update(r=float(res.statistic), ci_low=float(ci.low), ci_high=float(ci.high), p=float(res.pvalue))
        b = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 10)
        ax.plot(xs, np.polyval(b, xs), color="black", lw=1)
        title = f"{title}\nr = {info['r']:.2f} [{info['ci_low']:.2f}, {info['ci_high']:.2f}], p = {info['p']:.3g}"
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save(fig, path, title.replace("\n", " — ")), info


def matrix_plot(mat: np.ndarray, path: Path, title: str, labels=None, cbar_label: str = "value") -> Figure:
    mat = np.asarray(mat, float)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    off = np.abs(mat[~np.eye(len(mat), dtype=bool)])
    v = float(np.nanmax(off)) if off.size and np.isfinite(off).any() else 1.0
    v = v if v > 0 else 1.0
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046).set_label(cbar_label, fontsize=8)
    if labels is not None and len(labels) <= 30:
        ax.set_xticks(range(len(labels)), [str(s) for s in labels], rotation=90, fontsize=5)
        ax.set_yticks(range(len(labels)), [str(s) for s in labels], fontsize=5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path, title)


def curve_plot(df: pd.DataFrame, xcol: str, path: Path, title: str, group_col: str | None = None,
               max_panels: int = 12) -> Figure:
    """Line plots of every numeric column against ``xcol`` (e.g. graph metrics against sparsity)."""
    ycols = [c for c in df.columns if c not in (xcol, group_col) and pd.api.types.is_numeric_dtype(df[c])]
    ycols = ycols[:max_panels]
    n = max(len(ycols), 1)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.8 * ncol, 2.3 * nrow), squeeze=False)
    for ax, col in zip(axes.ravel(), ycols):
        if group_col:
            for g, sub in df.groupby(group_col):
                s = sub.groupby(xcol)[col].mean()
                ax.plot(s.index, s.values, label=str(g), color=GROUP_COLORS.get(str(g)))
            ax.legend(fontsize=6)
        else:
            ax.plot(df[xcol], df[col], color="#333")
        ax.set_title(str(col), fontsize=8)
        ax.set_xlabel(xcol, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(ycols):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path, title)
