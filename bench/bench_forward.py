"""CPU forward latency of every architecture, plain and traced, against the sum of its parts.

    nice python bench/bench_forward.py                      # tiny and small, 20 repeats
    python bench/bench_forward.py --sizes tiny --repeats 50

Batch 1, eval mode, ``torch.inference_mode``, a few warm-up runs, then the median of ``--repeats``
timed runs (plain and traced alternate, so both see the same machine load). Threads: every core
this process may use, unless ``--threads`` says otherwise.

For ``small`` the same run also times the parts a fusion model is built from, as torchvision
ships them: ResNet-50 up to ``layer3`` and ViT-S/16 (``VisionTransformer``, 12 layers, 6 heads,
D 384, MLP 1536), within the same repeats as each model, so that the load of a shared machine
moves both alike. Each ``small`` model is reported as a ratio of latency and of FLOPs to
(ResNet-50 to layer3 + ViT-S/16). FLOPs come from ``torch.utils.flop_counter`` everywhere:
``tokenfusion.models.count_flops`` for our models, and the same counter over the torchvision parts
with the fused attention kernels switched off, so attention matmuls are counted on both sides.

Figures go to ``bench/results/forward_cpu.json`` with the torch version, CPU count, load average,
date, commit and command line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import resnet50
from torchvision.models.vision_transformer import VisionTransformer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

from bench.provenance import load_average, provenance  # noqa: E402
from tokenfusion.models import ARCHITECTURES, SIZES, count_flops, count_parameters, create  # noqa: E402

TARGET_TRACED = 1.5  # traced / plain latency, per model
TARGET_PARTS = 1.2  # small fusion model / (ResNet-50 to layer3 + ViT-S/16) latency
FUSION = ("late", "early", "layerwise")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def time_calls(calls: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """Median and min milliseconds of each call; the calls alternate within every repeat."""
    with torch.inference_mode():
        for _ in range(warmup):
            for call in calls.values():
                call()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {n: {"median_ms": statistics.median(s), "min_ms": min(s)} for n, s in samples.items()}


def torchvision_flops(module: nn.Module, x: Tensor) -> int:
    """FLOPs with MHA's fused path and fused SDPA off: the counter sees only the math path's matmuls."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops()


def resnet50_to_layer3() -> nn.Module:
    net = resnet50(weights=None)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)


def vit_s16(img_size: int) -> nn.Module:
    return VisionTransformer(image_size=img_size, patch_size=16, num_layers=12, num_heads=6,
                             hidden_dim=384, mlp_dim=1536)


def build_parts(img_size: int) -> dict[str, nn.Module]:
    return {"resnet50_to_layer3": resnet50_to_layer3().eval(), "vit_s16": vit_s16(img_size).eval()}


def bench_model(arch: str, size: str, repeats: int, warmup: int,
                parts: dict[str, nn.Module] | None = None) -> dict:
    """Time ``arch`` at ``size`` plain and traced; with ``parts``, time them in the same repeats, so
    that a change in machine load moves the model and the parts it is compared with alike."""
    torch.manual_seed(0)
    model = create(arch, size).eval()
    x = torch.randn(1, 3, model.config.img_size, model.config.img_size)
    calls = {"plain": lambda: model(x), "traced": lambda: model(x, trace=True)}
    for name, module in (parts or {}).items():
        calls[name] = lambda m=module: m(x)
    times = time_calls(calls, repeats, warmup)
    row = {
        "arch": arch, "size": size, "img_size": model.config.img_size,
        "params": count_parameters(model), "flops": count_flops(model),
        "plain_ms": times["plain"]["median_ms"], "plain_min_ms": times["plain"]["min_ms"],
        "traced_ms": times["traced"]["median_ms"], "traced_min_ms": times["traced"]["min_ms"],
        "traced_over_plain": times["traced"]["median_ms"] / times["plain"]["median_ms"],
    }
    if parts:
        row["parts_ms"] = {name: times[name]["median_ms"] for name in parts}
        row["parts_min_ms"] = {name: times[name]["min_ms"] for name in parts}
    return row


def summarise_parts(parts: dict[str, nn.Module], rows: list[dict], img_size: int) -> dict[str, dict[str, float]]:
    """Parameters and FLOPs of each part; latency: the median over the models it was timed beside."""
    x = torch.zeros(1, 3, img_size, img_size)
    out = {}
    for name, module in parts.items():
        out[name] = {
            "params": count_parameters(module), "flops": torchvision_flops(module, x),
            "median_ms": statistics.median(r["parts_ms"][name] for r in rows),
            "min_ms": min(r["parts_min_ms"][name] for r in rows),
        }
    out["sum"] = {k: sum(out[n][k] for n in parts) for k in ("params", "flops", "median_ms", "min_ms")}
    return out


def compare_to_parts(row: dict, parts: dict[str, dict[str, float]]) -> None:
    """Latency and FLOP ratios to the sum of parts (latency: the parts timed beside this model);
    their quotient is the cost per FLOP relative to the parts."""
    row["latency_over_parts"] = row["plain_ms"] / sum(row["parts_ms"].values())
    row["latency_over_parts_min"] = row["plain_min_ms"] / sum(row["parts_min_ms"].values())
    row["flops_over_parts"] = row["flops"] / parts["sum"]["flops"]
    row["latency_per_flop_over_parts"] = row["latency_over_parts"] / row["flops_over_parts"]


def table(rows: list[dict], parts: dict | None) -> str:
    head = (f"{'model':<10}{'size':<7}{'GFLOPs':>8}{'plain ms':>10}{'traced ms':>11}{'traced/plain':>14}"
            f"{'ms/parts':>10}{'(min)':>7}{'FLOPs/parts':>13}{'(ms/FLOP)/parts':>17}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ratios = "".join(f"{r[k]:>{w}.2f}" if k in r else f"{'':>{w}}" for k, w in
                         (("latency_over_parts", 10), ("latency_over_parts_min", 7), ("flops_over_parts", 13),
                          ("latency_per_flop_over_parts", 17)))
        lines.append(f"{r['arch']:<10}{r['size']:<7}{r['flops'] / 1e9:>8.2f}{r['plain_ms']:>10.1f}"
                     f"{r['traced_ms']:>11.1f}{r['traced_over_plain']:>14.2f}{ratios}")
    if parts:
        lines.append("")
        for name, label in (("resnet50_to_layer3", "torchvision ResNet-50 to layer3"),
                            ("vit_s16", "torchvision ViT-S/16"), ("sum", "sum of parts")):
            p = parts[name]
            lines.append(f"{label:<32}{p['flops'] / 1e9:>8.2f} GFLOPs{p['median_ms']:>10.1f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=list(SIZES))
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per model (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="default: every usable core")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "forward_cpu.json")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1, --warmup at least 0")
    torch.set_num_threads(args.threads)
    started = provenance(args.threads)

    rows, parts = [], None
    for size in args.sizes:
        img_size = SIZES[size]["img_size"]
        modules = build_parts(img_size) if size == "small" else None
        for arch in args.archs:
            print(f"timing {arch}/{size}" + (" beside the torchvision parts" if modules else "") + " ...", flush=True)
            rows.append(bench_model(arch, size, args.repeats, args.warmup, modules))
        if modules:
            parts = summarise_parts(modules, [r for r in rows if r["size"] == size], img_size)
            for row in rows:
                if row["size"] == size:
                    compare_to_parts(row, parts)

    print()
    print(table(rows, parts))
    traced_misses = [f"{r['arch']}/{r['size']}" for r in rows if r["traced_over_plain"] > TARGET_TRACED]
    parts_misses = [r["arch"] for r in rows if r["size"] == "small" and r["arch"] in FUSION
                    and r.get("latency_over_parts", 0) > TARGET_PARTS]
    print(f"\ntraced <= {TARGET_TRACED}x plain: " + ("met" if not traced_misses else f"missed by {traced_misses}"))
    if parts:
        print(f"small fusion <= {TARGET_PARTS}x sum of parts: "
              + ("met" if not parts_misses else f"missed by {parts_misses} (see FLOPs/parts)"))

    result = {
        "benchmark": "forward latency, CPU, batch 1, torch.inference_mode, eval",
        **started,
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
        "usable_cores": usable_cores(), "load_average_after": load_average(),
        "repeats": args.repeats, "warmup": args.warmup,
        "statistic": "median of repeats (min also given); FLOPs from torch.utils.flop_counter",
        "targets": {"traced_over_plain_max": TARGET_TRACED, "small_fusion_over_parts_max": TARGET_PARTS,
                    "traced_missed_by": traced_misses, "parts_missed_by": parts_misses if parts else None},
        "parts": parts,
        "models": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")


if __name__ == "__main__":
    main()
