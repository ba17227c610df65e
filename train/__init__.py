"""Training and evaluation entry points: ``python -m train`` or ``torchrun -m train``."""
