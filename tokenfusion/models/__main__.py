"""``python -m tokenfusion.models``: every architecture x size with parameters and FLOPs."""
from __future__ import annotations

import argparse

import torch

from . import count_flops, count_parameters, create, list_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=None, help="sizes to list (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for arch, size in list_models():
        if args.sizes and size not in args.sizes:
            continue
        model = create(arch, size)
        rows.append((arch, size, model.config.img_size, count_parameters(model) / 1e6, count_flops(model) / 1e9))
    if args.markdown:
        print("| model | size | input | params (M) | GFLOPs |\n|---|---|---|---:|---:|")
        for arch, size, img, params, flops in rows:
            print(f"| `{arch}` | {size} | {img} px | {params:.2f} | {flops:.2f} |")
    else:
        print(f"{'model':<10}{'size':<7}{'input':>6}{'params (M)':>12}{'GFLOPs':>9}")
        for arch, size, img, params, flops in rows:
            print(f"{arch:<10}{size:<7}{img:>6}{params:>12.2f}{flops:>9.2f}")


if __name__ == "__main__":
    main()
