"""Participant QC figures: their names (one owner) and their drawing (arrays in, small PNG out).

Names (:data:`FIGURES`, :func:`figure_path`): every QC figure is written to
``OUTPUT_DIR/sub-X/[ses-Y/]figures/`` with a BIDS-like name built by
:meth:`hfsmri.derivatives.Derivatives.path` (fMRIPrep's reportlet names where one exists):

=============  ===================================================================  ========================
kind           file name (after ``sub-X_[ses-Y_]``)                                  content
=============  ===================================================================  ========================
t1w_mni        ``space-<template>_desc-reg_T1w.png``                                T1w in MNI, template edges
bold_coreg     ``task-rest_desc-coreg_bold.png``                                    mean EPI, T1w WM boundary
bold_carpet    ``task-rest_desc-carpetplot_bold.png``                               FD, DVARS, carpet
bold_tsnr      ``task-rest_desc-tsnr_bold.png``                                     tSNR map mosaic
dwi_coreg      ``desc-coreg_dwi.png``                                               mean b0, T1w WM boundary
dwi_slices     ``desc-sliceoutliers_dwi.png``                                       slice dropout z-scores
=============  ===================================================================  ========================

Drawing: matplotlib (Agg), 80 dpi, at most ~770 x 400 px; the PNG is reduced to an adaptive
palette of :data:`PNG_COLOURS` colours (Pillow) and written atomically, so that one figure stays
well under 150 kB (measured sizes in docs/qc.md) and 20 subjects' figures fit in a report of a few MB.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

__all__ = ["FIGURES", "figure_path", "save_png", "registration_overlay", "coreg_overlay", "carpet_plot",
           "mosaic", "slice_outlier_plot", "PNG_COLOURS", "DPI"]

DPI = 80
PNG_COLOURS = 64
#: kind -> (suffix, desc, needs task, in template space)
FIGURES = {
    "t1w_mni": ("T1w", "reg", False, True),
    "bold_coreg": ("bold", "coreg", True, False),
    "bold_carpet": ("bold", "carpetplot", True, False),
    "bold_tsnr": ("bold", "tsnr", True, False),
    "dwi_coreg": ("dwi", "coreg", False, False),
    "dwi_slices": ("dwi", "sliceoutliers", False, False),
}


def figure_path(out, sub: str, ses: str | None, kind: str, task: str = "rest") -> Path:
    """Path of the QC figure ``kind`` (:data:`FIGURES`) of one subject/session."""
    from ..spatial.templates import TEMPLATE_SPACE

    if kind not in FIGURES:
        raise ValueError(f"unknown QC figure {kind!r}; choose from {sorted(FIGURES)}")
    suffix, desc, with_task, in_template = FIGURES[kind]
    ents = {"task": task if with_task else None, "desc": desc}
    return out.path(sub, ses, "figures", suffix, space=TEMPLATE_SPACE if in_template else None,
                    entities=ents, ext=".png")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, colours: int = PNG_COLOURS) -> Path:
    """Render ``fig`` at :data:`DPI`, reduce it to ``colours`` palette colours, write it
    atomically to ``path`` and close the figure."""
    from PIL import Image

    from ..derivatives import atomic_path

    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    finally:
        plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=int(colours), method=Image.Quantize.MEDIANCUT,
                                                    dither=Image.Dither.NONE)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return path


def _centre(mask: np.ndarray, shape) -> np.ndarray:
    idx = np.argwhere(mask)
    return ((idx.min(0) + idx.max(0)) // 2) if idx.size else np.asarray(shape[:3]) // 2


def _views(c):
    return [(lambda a: a[c[0], :, :].T), (lambda a: a[:, c[1], :].T), (lambda a: a[:, :, c[2]].T)]


def _aspects(zooms):
    z = np.asarray(zooms if zooms is not None else (1.0, 1.0, 1.0), float)
    return [z[2] / z[1], z[2] / z[0], z[1] / z[0]]  # sagittal (y, z), coronal (x, z), axial (x, y)


def registration_overlay(warped_t1: np.ndarray, template_t1: np.ndarray, template_mask: np.ndarray,
                         path: str | Path, title: str = "", template_gm: np.ndarray | None = None) -> Path:
    """T1w resampled to MNI (grey) with the template's edges: brain outline (red) and GM boundary
    (yellow, GM probability 0.5) on three orthogonal slices through the template brain's centre.

    All arrays are on the same MNI grid (RAS voxel order). ``template_t1`` is accepted for
    compatibility and not drawn.
    """
    plt = _plt()
    w = np.asarray(warped_t1, dtype=float)
    m = np.asarray(template_mask) > 0
    c = _centre(m, w.shape)
    vmax = np.percentile(w[m], 99) if m.any() else w.max()
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.4), facecolor="black")
    for ax, view in zip(axes, _views(c)):
        ax.imshow(view(w), cmap="gray", origin="lower", vmin=0, vmax=vmax, interpolation="nearest")
        ax.contour(view(m.astype(float)), levels=[0.5], colors="red", linewidths=0.7)
        if template_gm is not None:
            ax.contour(view(np.asarray(template_gm, dtype=float)), levels=[0.5], colors="yellow", linewidths=0.4)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)


def coreg_overlay(background: np.ndarray, wm_prob: np.ndarray, path: str | Path, title: str = "",
                  zooms=None) -> Path:
    """A mean EPI / b0 resampled into the reference grid (grey) with the reference's WM boundary
    (WM probability 0.5, yellow) on three orthogonal slices through the WM's centre.

    Both arrays are on the same grid in RAS-like voxel order (``nibabel.as_closest_canonical``);
    ``zooms`` (mm) sets the aspect ratio of each view.
    """
    plt = _plt()
    b = np.nan_to_num(np.asarray(background, dtype=float))
    wm = np.asarray(wm_prob, dtype=float)
    if b.shape != wm.shape:
        raise ValueError(f"background {b.shape} and WM map {wm.shape} are not on one grid")
    c = _centre(wm >= 0.5, b.shape)
    inside = b[b > 0]
    vmax = np.percentile(inside, 99) if inside.size else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.4), facecolor="black")
    for ax, view, asp in zip(axes, _views(c), _aspects(zooms)):
        ax.imshow(view(b), cmap="gray", origin="lower", vmin=0, vmax=vmax, interpolation="nearest", aspect=asp)
        if (view(wm) >= 0.5).any() and (view(wm) < 0.5).any():
            ax.contour(view(wm), levels=[0.5], colors="yellow", linewidths=0.6)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)


def carpet_plot(matrix: np.ndarray, row_labels: np.ndarray, label_names: dict, fd: np.ndarray,
                dvars_std: np.ndarray, path: str | Path, tr: float, fd_threshold: float | None = None,
                title: str = "") -> Path:
    """fMRIPrep-style carpet: FD (mm) and standardised DVARS above the (rows, volumes) matrix of
    z-scored voxel series (grey, -2..2), rows grouped by tissue with a coloured band on the left.

    ``matrix`` / ``row_labels`` come from :func:`hfsmri.qc.functional.carpet_matrix`; ``fd`` and
    ``dvars_std`` have one value per volume; volumes above ``fd_threshold`` are marked in red.
    """
    plt = _plt()
    from matplotlib import colors as mcolors

    mat = np.asarray(matrix, dtype=float)
    n_t = mat.shape[1] if mat.ndim == 2 and mat.size else len(fd)
    t = np.arange(n_t) * float(tr)
    fig = plt.figure(figsize=(7.2, 4.6), facecolor="white")
    gs = fig.add_gridspec(3, 2, height_ratios=(1, 1, 4), width_ratios=(0.025, 1), hspace=0.12, wspace=0.01,
                          left=0.1, right=0.98, top=0.9 if title else 0.97, bottom=0.1)
    ax_fd = fig.add_subplot(gs[0, 1])
    ax_dv = fig.add_subplot(gs[1, 1], sharex=ax_fd)
    ax_c = fig.add_subplot(gs[2, 1], sharex=ax_fd)
    ax_l = fig.add_subplot(gs[2, 0], sharey=ax_c)
    f = np.nan_to_num(np.asarray(fd, float))
    ax_fd.plot(t, f, color="tab:blue", lw=0.8)
    if fd_threshold is not None:
        ax_fd.axhline(float(fd_threshold), color="tab:red", lw=0.6, ls="--")
        bad = f > float(fd_threshold)
        if bad.any():
            ax_fd.plot(t[bad], f[bad], "|", color="tab:red", ms=6)
    ax_fd.set_ylabel("FD (mm)", fontsize=7)
    ax_dv.plot(t, np.nan_to_num(np.asarray(dvars_std, float)), color="tab:orange", lw=0.8)
    ax_dv.set_ylabel("DVARS\n(std)", fontsize=7)
    for ax in (ax_fd, ax_dv):
        ax.tick_params(labelsize=6, labelbottom=False)
        ax.grid(alpha=0.3, lw=0.4)
    if mat.size:
        ax_c.imshow(mat, cmap="gray", vmin=-2, vmax=2, aspect="auto", interpolation="nearest",
                    extent=(t[0] - tr / 2, t[-1] + tr / 2, mat.shape[0], 0))
    ax_c.set_yticks([])
    ax_c.set_xlabel("time (s)", fontsize=7)
    ax_c.tick_params(labelsize=6)
    labs = np.asarray(row_labels)
    uniq = [lab for lab in label_names if (labs == lab).any()]
    palette = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"]
    cmap = mcolors.ListedColormap([palette[i % len(palette)] for i in range(max(1, len(uniq)))])
    code = np.array([uniq.index(v) if v in uniq else 0 for v in labs], float)[:, None]
    if code.size:
        ax_l.imshow(code, cmap=cmap, vmin=-0.5, vmax=max(1, len(uniq)) - 0.5, aspect="auto",
                    interpolation="nearest", extent=(0, 1, mat.shape[0], 0))
        for i, lab in enumerate(uniq):
            rows = np.flatnonzero(labs == lab)
            ax_l.text(-0.6, rows.mean(), label_names[lab], rotation=90, va="center", ha="right", fontsize=6,
                      transform=ax_l.get_yaxis_transform())
    ax_l.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=8)
    return save_png(fig, path)


def mosaic(volume: np.ndarray, mask: np.ndarray, path: str | Path, title: str = "", label: str = "",
           n_slices: int = 12, vmax: float | None = None, cmap: str = "viridis") -> Path:
    """Axial mosaic (2 rows) of ``volume`` inside ``mask`` (RAS voxel order), evenly spaced slices
    through the mask, with a labelled colour bar (``label``, e.g. "tSNR")."""
    plt = _plt()
    v = np.where(np.asarray(mask, bool), np.nan_to_num(np.asarray(volume, float)), np.nan)
    ks = np.flatnonzero(np.asarray(mask, bool).any(axis=(0, 1)))
    if ks.size == 0:
        ks = np.arange(v.shape[2])
    sel = np.unique(np.linspace(ks[0], ks[-1], min(n_slices, ks.size) + 2).round().astype(int)[1:-1]) \
        if ks.size > 2 else ks
    fin = v[np.isfinite(v)]
    top = float(vmax) if vmax is not None else (float(np.percentile(fin, 98)) if fin.size else 1.0)
    ncol = int(np.ceil(len(sel) / 2)) if len(sel) > 1 else 1
    nrow = 2 if len(sel) > 1 else 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.2, 3.0), facecolor="black", squeeze=False)
    im = None
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, k in zip(axes.ravel(), sel):
        im = ax.imshow(v[:, :, k].T, origin="lower", cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.025, pad=0.01)
        cb.set_label(label, color="white", fontsize=7)
        cb.ax.tick_params(colors="white", labelsize=6)
    if title:
        fig.suptitle(title, color="white", fontsize=8)
    return save_png(fig, path)


def slice_outlier_plot(z: np.ndarray, outlier: np.ndarray, path: str | Path, title: str = "",
                       z_threshold: float = 4.0) -> Path:
    """Heat map of the slice-wise robust z of every diffusion-weighted volume (columns) and slice
    (rows), clipped to +-8, with the outlier slices circled (see :mod:`hfsmri.qc.diffusion`)."""
    plt = _plt()
    zz = np.asarray(z, float)
    fig, ax = plt.subplots(figsize=(7.2, 2.8), facecolor="white")
    im = ax.imshow(np.clip(zz.T, -8, 8), cmap="RdBu", vmin=-8, vmax=8, aspect="auto", origin="lower",
                   interpolation="nearest")
    rows, cols = np.nonzero(np.asarray(outlier, bool))
    if rows.size:
        ax.plot(rows, cols, "o", mfc="none", mec="black", ms=5, mew=0.8)
    ax.set_xlabel("diffusion-weighted volume", fontsize=7)
    ax.set_ylabel("slice", fontsize=7)
    ax.tick_params(labelsize=6)
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    cb.set_label(f"robust z (outlier < -{z_threshold:g})", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
