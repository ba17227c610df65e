"""Token Fusion Lab: CNN tokens, patch tokens and three ways to fuse them."""
__version__ = "0.1.0"
