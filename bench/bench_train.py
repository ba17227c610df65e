"""Training throughput: images/s and model FLOP utilisation (MFU) of a full optimiser step, for
every ``tiny`` model on this CPU or the ``small`` models on a GPU in bf16 with channels-last
(optionally compiled). On the CPU it also measures the teaching runs' data pipeline (seeded
per-image augmentation and batching of in-memory SynthShapes, no model), which every step pays on
top of the model. The GPU paths (``--amp``, ``--channels-last``, ``--compile``) run on a CPU too.

    python bench/bench_train.py --threads 2                          # CPU, tiny models
    python bench/bench_train.py --device cuda --batch-size 128       # GPU, small models, bf16

MFU = 3 x forward FLOPs per image (``torch.utils.flop_counter``; forward + backward) x images/s /
peak FLOP/s. The peak is ``--peak-tflops``; by default an H100 SXM's dense bf16 (989) on a GPU, and
on a CPU its FP32 vector peak at an assumed 2.5 GHz: threads x 2 FMA units x 2 FLOP x lanes (16
with AVX-512, else 8), a rough figure: pass your CPU's. On the CPU it also prints the images each
model's teaching run steps through (``synthshapes-tiny`` preset) and the minutes of optimiser steps
that makes at the measured rate. Writes bench/results/train_cpu.json (or train_gpu.json).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from tokenfusion.models import ARCHITECTURES, count_flops, create

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.provenance import provenance  # noqa: E402
from train.data import build_datasets, build_loaders  # noqa: E402
from train.engine import apply_preset, get_args_parser  # noqa: E402
from train.presets import resolve_preset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GPU_PEAK_TFLOPS = 989.0  # H100 SXM, dense bf16
CPU_ASSUMED_GHZ = 2.5


def default_peak(device: torch.device, threads: int) -> tuple[float, str]:
    """Peak TFLOP/s when ``--peak-tflops`` is not given, and how it was reached."""
    if device.type == "cuda":
        return GPU_PEAK_TFLOPS, "default: H100 SXM dense bf16"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lanes = 16 if "avx512f" in flags else 8
    peak = threads * 2 * 2 * lanes * CPU_ASSUMED_GHZ * 1e9 / 1e12
    return peak, (f"default: FP32 vector peak, {threads} threads x 2 FMA units x 2 FLOP x {lanes} lanes "
                  f"x {CPU_ASSUMED_GHZ} GHz (assumed clock)")


def images_per_second(arch: str, size: str, batch: int, steps: int, device: torch.device, bf16: bool,
                      channels_last: bool, compile_model: bool, warmup: int = 3) -> float:
    torch.manual_seed(0)
    model = create(arch, size).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x = torch.randn(batch, 3, model.config.img_size, model.config.img_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.config.num_classes, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(step_model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
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


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--size", choices=["tiny", "small", "base"], default=None, help="default: small on cuda, tiny on cpu")
    parser.add_argument("--arch", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (the median counts)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on cuda)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on cuda")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s for MFU (default: see above)")
    parser.add_argument("--no-loader", action="store_true", help="skip the data-pipeline figure on the CPU")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/train_<device>.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    size = args.size or ("small" if on_gpu else "tiny")
    amp = on_gpu if args.amp is None else args.amp
    channels_last = on_gpu if args.channels_last is None else args.channels_last
    if args.peak_tflops is None:
        peak_tflops, peak_source = default_peak(device, torch.get_num_threads())
    else:
        peak_tflops, peak_source = args.peak_tflops, "--peak-tflops"
    command = shlex.join(["python", "bench/bench_train.py", *(sys.argv[1:] if argv is None else argv)])
    where = provenance(torch.get_num_threads(), command)  # taken before the measurement, as the docs quote it
    rows = []
    for arch in args.arch:
        ips = images_per_second(arch, size, args.batch_size, args.steps, device, bf16=amp, channels_last=channels_last,
                                compile_model=args.compile, warmup=args.warmup)
        flops = count_flops(create(arch, size))
        row = {"arch": arch, "size": size, "images_per_s": ips, "gflops_per_image": flops / 1e9,
               "mfu": 3 * flops * ips / (peak_tflops * 1e12)}
        note = f"   MFU {100 * row['mfu']:.2f}%"
        if size == "tiny":
            recipe = resolve_preset("synthshapes-tiny", arch)
            row["teaching_images"] = recipe["epochs"] * recipe["train_samples"]
            row["teaching_minutes"] = row["teaching_images"] / ips / 60
            note += f"   teaching run: {row['teaching_images'] / 1e3:.0f} k images, {row['teaching_minutes']:.1f} min"
        rows.append(row)
        print(f"{arch:<10}{size:<7}{ips:>9.0f} img/s{note}", flush=True)
    loader = None
    if not on_gpu and not args.no_loader:
        loader = loader_images_per_second()
        print(f"data pipeline (synthshapes-tiny loader, no model): {loader:.0f} img/s", flush=True)
    out = args.out or RESULTS / ("train_gpu.json" if on_gpu else "train_cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        **where,
        "torch": str(torch.__version__), "device": torch.cuda.get_device_name() if on_gpu else f"cpu x{os.cpu_count()}",
        "batch_size": args.batch_size, "amp_bf16": amp, "channels_last": channels_last, "compile": args.compile,
        "peak_tflops": peak_tflops, "peak_source": peak_source, "rows": rows, "loader_images_per_s": loader,
    }, indent=2))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
