"""Run under torchrun by test_distributed.py: train a few steps, then save this rank's weights."""
import os
import sys
from pathlib import Path

import torch

from train.engine import get_args_parser, main

if __name__ == "__main__":
    args = get_args_parser().parse_args(sys.argv[1:])
    model = main(args)
    torch.save(model.state_dict(), Path(args.output_dir) / f"rank{os.environ['RANK']}.pt")
