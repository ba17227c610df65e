"""Datasets: SynthShapes (the embedded teaching set) here; ImageFolder loading in ``imagefolder``,
transforms in ``transforms``, safe image decoding in ``images``."""
from .synthshapes import *  # noqa: F401,F403
from .synthshapes import __all__  # noqa: F401
