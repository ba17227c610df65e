"""Importing the library and the app's shared modules loads no explanation back-end: captum and
pytorch-grad-cam (with scikit-learn, SciPy, Matplotlib, OpenCV) cost the first page about two
seconds, and its first view (attention) needs neither. They load when a CAM or an attribution runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("captum", "pytorch_grad_cam", "sklearn", "scipy", "pandas", "matplotlib", "IPython", "cv2")

SCRIPT = f"""
import json, sys
import tokenfusion.explain, tokenfusion.checkpoint, app.state, app.sidebar

def loaded():
    return [m for m in {HEAVY!r} if m in sys.modules]

seen = {{"import": loaded()}}
import torch
from tokenfusion.explain import Explainer
from tokenfusion.models import create

torch.manual_seed(0)
model = create("early", "tiny").eval()
side = model.config.img_size
session = Explainer(model, torch.randn(1, 3, side, side))
seen["side"] = side
seen["attention"] = [loaded(), session.explain("attention").map.shape[-1]]
gradcam = session.explain("gradcam")
seen["gradcam"] = [loaded(), gradcam.map.shape[-1], float(gradcam.map.max())]
occlusion = session.explain("occlusion", window=0.25, stride=1.0)
seen["occlusion"] = [loaded(), occlusion.map.shape[-1], float(occlusion.map.max())]
print(json.dumps(seen))
"""


def test_explanation_backends_load_on_first_use():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["import"] == [], f"importing tokenfusion.explain and the app's modules loaded {seen['import']}"
    assert seen["side"] == 64  # the tiny models' input size
    assert seen["attention"] == [[], 64]
    cam_loaded, side, peak = seen["gradcam"]
    assert "pytorch_grad_cam" in cam_loaded and "captum" not in cam_loaded and (side, peak) == (64, 1.0)
    attr_loaded, side, peak = seen["occlusion"]
    assert "captum" in attr_loaded and (side, peak) == (64, 1.0)
