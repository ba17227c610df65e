"""Run by test_distributed.py, under torchrun or alone: train, then save this rank's weights and the
indices of the training samples it loaded."""
import json
import os
import sys
from pathlib import Path

import torch

from train.data import SeededAugmentation
from train.engine import get_args_parser, main

if __name__ == "__main__":
    seen: list[int] = []
    load = SeededAugmentation.__getitem__

    def recording(self, key):
        seen.append(key[0])
        return load(self, key)

    SeededAugmentation.__getitem__ = recording
    args = get_args_parser().parse_args(sys.argv[1:])
    model = main(args)
    rank = os.environ.get("RANK", "0")
    torch.save(model.state_dict(), Path(args.output_dir) / f"rank{rank}.pt")
    (Path(args.output_dir) / f"samples{rank}.json").write_text(json.dumps(seen))
