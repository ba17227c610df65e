"""Training throughput: images/s of a full optimiser step for every ``tiny`` model on this CPU
and, when a GPU is present, images/s and model FLOP utilisation (MFU) of the ``small`` models in
bf16 with channels-last (optionally compiled). On the CPU it also measures the teaching runs' data
pipeline (seeded per-image augmentation and batching of in-memory SynthShapes, no model), which
every step pays on top of the model.

    python bench/bench_train.py --threads 2                 # CPU, tiny models
    python bench/bench_train.py --gpu --batch-size 128      # GPU, small models, bf16

MFU = 3 x forward FLOPs per image (forward + backward) x images/s / peak bf16 FLOP/s. On the
CPU it also prints the images each model's teaching run steps through (``synthshapes-tiny``
preset) and the minutes of optimiser steps that makes at the measured rate.
Writes bench/results/train_cpu.json (or train_gpu.json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from tokenfusion.models import ARCHITECTURES, count_flops, create

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train.data import build_datasets, build_loaders  # noqa: E402
from train.engine import apply_preset, get_args_parser  # noqa: E402
from train.presets import resolve_preset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def images_per_second(arch: str, size: str, batch: int, steps: int, device: torch.device, bf16: bool,
                      compile_model: bool) -> float:
    torch.manual_seed(0)
    model = create(arch, size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x = torch.randn(batch, 3, model.config.img_size, model.config.img_size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.config.num_classes, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(step_model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return batch / sorted(times)[len(times) // 2]


def loader_images_per_second(images: int = 6400) -> float:
    """Images/s of one pass of the ``synthshapes-tiny`` training loader over ``images`` in-memory images."""
    args = apply_preset(get_args_parser().parse_args(
        ["--arch", "vit", "--preset", "synthshapes-tiny", "--train-samples", str(images), "--val-samples", "64", "--no-progress"]))
    config = create("vit", "tiny").config
    train, val, _ = build_datasets(args, config)
    loader, _, _ = build_loaders(args, config, train, val, rank=0, world_size=1, pin=False)
    start = time.perf_counter()
    seen = sum(len(targets) for _, targets in loader)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="small models on cuda in bf16")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM: 989)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.gpu else "cpu")
    size = "small" if args.gpu else "tiny"
    rows = []
    for arch in ARCHITECTURES:
        ips = images_per_second(arch, size, args.batch_size, args.steps, device, bf16=args.gpu, compile_model=args.compile)
        flops = count_flops(create(arch, size))
        row = {"arch": arch, "size": size, "images_per_s": ips, "gflops_per_image": flops / 1e9}
        if args.gpu:
            row["mfu"] = 3 * flops * ips / (args.peak_tflops * 1e12)
            note = f"   MFU {100 * row['mfu']:.1f}%"
        else:
            recipe = resolve_preset("synthshapes-tiny", arch)
            row["teaching_images"] = recipe["epochs"] * recipe["train_samples"]
            row["teaching_minutes"] = row["teaching_images"] / ips / 60
            note = f"   teaching run: {row['teaching_images'] / 1e3:.0f} k images, {row['teaching_minutes']:.1f} min"
        rows.append(row)
        print(f"{arch:<10}{size:<7}{ips:>9.0f} img/s{note}", flush=True)
    loader = None
    if not args.gpu:
        loader = loader_images_per_second()
        print(f"data pipeline (synthshapes-tiny loader, no model): {loader:.0f} img/s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("train_gpu.json" if args.gpu else "train_cpu.json")
    out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": str(torch.__version__), "device": torch.cuda.get_device_name() if args.gpu else f"cpu x{os.cpu_count()}",
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "load_average": os.getloadavg(), "rows": rows,
        "loader_images_per_s": loader,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
