"""The explanation back-ends, captum and pytorch-grad-cam: imported by the first map that needs them
(seconds on a CPU, with scikit-learn, SciPy and Matplotlib), or ahead of it by :func:`load_backends`."""
from __future__ import annotations

from importlib import import_module

__all__ = ["BACKENDS", "load_backends"]

#: What the first CAM (pytorch-grad-cam, through our CAM classes) and the first attribution (captum) import.
BACKENDS = ("tokenfusion.explain.cam_classes", "captum.attr")


def load_backends() -> None:
    """Import :data:`BACKENDS` now, so that the first CAM or attribution does not wait for them."""
    for name in BACKENDS:
        import_module(name)
