"""``bench/bench_train.py`` on a CPU: the MFU code the GPU run uses, on a tiny model for two steps."""
import json
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.bench_train import default_peak, main
from tokenfusion.models import create


def test_mfu_is_three_forward_flops_times_images_per_second_over_the_peak(tmp_path):
    out = main(["--device", "cpu", "--arch", "early", "--batch-size", "4", "--steps", "2", "--warmup", "1",
                "--threads", "1", "--amp", "--channels-last", "--peak-tflops", "0.5", "--no-loader",
                "--out", str(tmp_path / "train.json")])
    result = json.loads(out.read_text())
    assert (result["peak_tflops"], result["amp_bf16"], result["channels_last"]) == (0.5, True, True)
    assert result["command"].startswith("python bench/bench_train.py --device cpu")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", result["commit"]) and result["threads"] == 1
    (row,) = result["rows"]
    model = create("early", "tiny").eval()
    size = model.config.img_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size), trace=True)
    assert row["gflops_per_image"] * 1e9 == counter.get_total_flops() > 0
    assert row["images_per_s"] > 0
    assert row["mfu"] == pytest.approx(3 * counter.get_total_flops() * row["images_per_s"] / 0.5e12, rel=1e-12)


def test_the_default_cpu_peak_is_stated():
    peak, source = default_peak(torch.device("cpu"), threads=2)
    assert peak > 0 and "2 threads" in source and "GHz" in source
    assert default_peak(torch.device("cpu"), threads=4)[0] == 2 * peak  # per thread
