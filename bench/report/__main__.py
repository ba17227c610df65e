"""``python -m bench.report [--write | --check]``."""
from .docs import main

main()
