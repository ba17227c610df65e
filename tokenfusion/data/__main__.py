"""``python -m tokenfusion.data``: export SynthShapes to an ImageFolder tree, or preview its classes."""
from .synthshapes import main

if __name__ == "__main__":
    main()
