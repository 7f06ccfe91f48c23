"""Synthetic diffusion data for the dwi tests (closed-form signals from known tensors)."""
from __future__ import annotations

import numpy as np


def random_rotations(n, rng):
    """n random rotation matrices (uniform quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)


def random_tensors(n, rng):
    """(evals (n,3) descending, rotations (n,3,3), tensors (n,3,3)) with brain-like diffusivities."""
    rot = random_rotations(n, rng)
    ev = np.sort(rng.uniform(0.1e-3, 2.0e-3, size=(n, 3)), axis=1)[:, ::-1]
    tens = np.einsum("nij,nj,nkj->nik", rot, ev, rot)
    return ev, rot, tens


def fibonacci_dirs(n):
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - i / n)  # hemisphere
    theta = np.pi * (1 + 5 ** 0.5) * i
    return np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])


def signals(tens, bvals, bvecs, s0=1000.0):
    q = np.einsum("gi,nij,gj->ng", bvecs, tens, bvecs)
    return s0 * np.exp(-bvals[None, :] * q)
