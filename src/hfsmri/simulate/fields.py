"""Random fields and signals used by the simulator (pure numpy/scipy, no I/O).

* :func:`smooth_field` — a stationary Gaussian random field of unit variance with a given
  smoothness (FWHM in mm), built on a coarse grid and evaluated anywhere by interpolation.
* :func:`band_limited_noise` — unit-variance time series whose power lies in a frequency band
  (Hz), with an optional 1/f tilt, as slow resting-state fluctuations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class CoarseGrid:
    """An axis-aligned grid (origin mm, spacing mm, shape) on which smooth fields are drawn."""

    origin: tuple
    spacing: float
    shape: tuple

    @classmethod
    def covering(cls, lo, hi, spacing: float) -> "CoarseGrid":
        lo = np.asarray(lo, float)
        hi = np.asarray(hi, float)
        shape = tuple(int(np.ceil((h - l) / spacing)) + 1 for l, h in zip(lo, hi))
        return cls(tuple(lo), float(spacing), shape)

    def to_index(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) mm -> (3, n) continuous voxel indices."""
        return ((np.asarray(xyz, float) - np.asarray(self.origin)) / self.spacing).T


# the MNI box (mm) that every simulated head lives in, with margin
HEAD_LO = (-110.0, -150.0, -110.0)
HEAD_HI = (110.0, 110.0, 120.0)


def smooth_field(rng: np.random.Generator, fwhm_mm: float, grid: CoarseGrid | None = None,
                 n: int = 1) -> np.ndarray:
    """Draw ``n`` unit-variance Gaussian random fields with smoothness ``fwhm_mm`` on ``grid``.

    Returns an array of shape ``(n, *grid.shape)`` (float32); evaluate it at mm points with
    :func:`sample_field`. The grid spacing should be <= fwhm/2 for a faithful field. The variance
    is normalised empirically (each field has exactly mean 0 and SD 1 over the grid interior).
    """
    if grid is None:
        grid = default_grid(fwhm_mm)
    sigma_vox = fwhm_mm * FWHM_TO_SIGMA / grid.spacing
    out = np.empty((n,) + tuple(grid.shape), dtype=np.float32)
    for k in range(n):
        f = ndimage.gaussian_filter(rng.standard_normal(grid.shape), sigma_vox, mode="wrap")
        f -= f.mean()
        f /= f.std() + 1e-12
        out[k] = f
    return out


def default_grid(fwhm_mm: float) -> CoarseGrid:
    spacing = float(np.clip(fwhm_mm / 3.0, 2.0, 8.0))
    return CoarseGrid.covering(HEAD_LO, HEAD_HI, spacing)


def sample_field(field: np.ndarray, grid: CoarseGrid, xyz: np.ndarray, order: int = 1) -> np.ndarray:
    """Evaluate a field (grid.shape) at (n, 3) mm points; linear (order 1) or cubic (3)."""
    return ndimage.map_coordinates(field, grid.to_index(xyz), order=order, mode="nearest",
                                   prefilter=order > 1).astype(np.float32)


def band_limited_spectrum(freqs: np.ndarray, band=(0.01, 0.08), tilt: float = 0.5, floor: float = 0.0) -> np.ndarray:
    """Amplitude spectral density of :func:`band_limited_noise` at ``freqs`` (Hz): ``(band[0]/f)**tilt``
    in ``band``, ``floor`` outside, 0 at f = 0."""
    amp = np.full(np.shape(freqs), float(floor))
    inband = (freqs >= band[0]) & (freqs <= band[1])
    safe = np.where(freqs > 0, freqs, 1.0)
    amp[inband] = (band[0] / safe[inband]) ** tilt
    amp[0] = 0.0
    return amp


def band_limited_noise(rng: np.random.Generator, n_series: int, n_t: int, tr: float,
                       band=(0.01, 0.08), tilt: float = 0.5, floor: float = 0.0) -> np.ndarray:
    """Unit-variance series (n_t, n_series) with power in ``band`` (Hz) shaped as 1/f**tilt.

    ``floor`` is the relative amplitude spectral density kept outside the band (0 = ideal band-pass).
    Built in the Fourier domain from complex Gaussian coefficients, so every series is a stationary
    Gaussian process; columns are independent.
    """
    freqs = np.fft.rfftfreq(n_t, d=tr)
    amp = band_limited_spectrum(freqs, band, tilt, floor)
    coef = rng.standard_normal((freqs.size, n_series)) + 1j * rng.standard_normal((freqs.size, n_series))
    ts = np.fft.irfft(coef * amp[:, None], n=n_t, axis=0)
    ts -= ts.mean(axis=0)
    ts /= ts.std(axis=0) + 1e-12
    return ts.astype(np.float32)
