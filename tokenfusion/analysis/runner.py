"""One pass over a data set, every model on every batch, every measure accumulated batch by batch."""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from itertools import combinations
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..models import TokenFusionModel
from .ablation import AblationCurves, Recording
from .attention_distance import AttentionDistance
from .class_sensitivity import ClassSensitivity
from .cka import MinibatchCKA
from .data import AnalysisData
from .features import layer_tokens
from .fusion_stats import FusionStats

__all__ = ["DEFAULT_MEASURES", "MEASURES", "analyze", "cka_comparisons"]

MEASURES = ("attention_distance", "cka", "ablation", "fusion_weights", "class_sensitivity")
DEFAULT_MEASURES = MEASURES[:4]  # class sensitivity explains image by image: asked for by name


def cka_comparisons(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Blocks of the CKA table: for every pair of models, their features of each kind they share
    (``vit`` against the patch tokens of a fusion model, the ``cnn`` trunk against its CNN tokens...);
    within every model holding both kinds, its CNN features against its patch features (``late``'s
    two streams); each with its ``representation`` table (``"tokens"``: compared token by token, the
    grids matching; ``"mean"``: on each image's mean token) when ``result`` has one. ``result``:
    :meth:`MinibatchCKA.result` with ``models`` and ``kinds`` added."""
    names, models, kinds = result["names"], result["models"], result["kinds"]
    table = torch.tensor(result["cka"])
    representation = result.get("representation")
    order = list(dict.fromkeys(models))

    def pick(model: str, kind: str) -> list[int]:
        return [i for i, (m, k) in enumerate(zip(models, kinds)) if m == model and k == kind]

    def block(a: str, ka: str, b: str, kb: str) -> dict[str, Any] | None:
        rows, cols = pick(a, ka), pick(b, kb)
        if not rows or not cols:
            return None
        found = {"a": a, "a_kind": ka, "b": b, "b_kind": kb, "rows": [names[i] for i in rows],
                 "cols": [names[j] for j in cols], "cka": table[rows][:, cols].tolist()}
        if representation is not None:
            found["representation"] = [[representation[i][j] for j in cols] for i in rows]
        return found

    found = [block(a, k, b, k) for a, b in combinations(order, 2) for k in ("cnn", "patch")]
    found += [block(m, "cnn", m, "patch") for m in order]
    return [c for c in found if c is not None]


@torch.no_grad()
def analyze(
    models: dict[str, TokenFusionModel], data: AnalysisData, *, batch_size: int = 256,
    device: str | torch.device | None = None, measures: tuple[str, ...] = DEFAULT_MEASURES,
    ablation_modes: tuple[str, ...] = ("mean",), workers: int = 0,
    progress: bool | Callable[[int, int], None] = True, sensitivity_images: int = 32,
) -> dict[str, Any]:
    """Run every model of ``models`` (name -> model) over ``data`` in batches and return every measure
    of ``measures`` as plain numbers (the README section "What the shipped models show over a data set"
    describes each).
    ``device``: default the GPU when there is one. ``progress``: a bar on the terminal, or a callable
    told ``(images done, images in all)`` after every batch (the app's progress bar). Memory does
    not grow with the number of images."""
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(f"Unknown measures {sorted(unknown)}. Expected some of {list(MEASURES)}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    num_classes = len(data.class_names)
    for model in models.values():
        model.eval().to(device)
    distance = {n: AttentionDistance(m) for n, m in models.items()}
    fusion = {n: FusionStats(num_classes) for n, m in models.items() if m.structure.is_fusion}
    ablation = {n: AblationCurves(m, num_classes, ablation_modes, data.cues) for n, m in models.items()
                if m.structure.token_kinds}
    sensitivity = {n: ClassSensitivity(m, sensitivity_images) for n, m in models.items()}
    similarity = MinibatchCKA()
    feature_owner: dict[str, tuple[str, str]] = {}
    grids: dict[str, tuple[int, int]] = {}
    correct = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    seen = 0
    loader = DataLoader(data.dataset, batch_size=batch_size, num_workers=workers)
    for x, labels in tqdm(loader, desc="analysis", unit="batch", disable=progress is not True):
        x, labels = x.to(device), labels.to(device)
        seen += len(x)
        features = {}
        for name, model in models.items():
            start = time.perf_counter()
            recording = Recording(model)  # the ablations serve what they cannot change from this forward
            with recording.record() if "ablation" in measures and name in ablation else nullcontext():
                logits, trace = model(x, trace=True)
            correct[name] += int((logits.argmax(-1) == labels).sum())
            seconds["traced_forward"] += time.perf_counter() - start
            if "attention_distance" in measures:
                start = time.perf_counter()
                distance[name].update(trace, tuple(x.shape[-2:]))
                seconds["attention_distance"] += time.perf_counter() - start
            if "fusion_weights" in measures and name in fusion:
                start = time.perf_counter()
                fusion[name].update(trace, labels)
                seconds["fusion_weights"] += time.perf_counter() - start
            if "cka" in measures:
                for feature, (kind, values, grid) in layer_tokens(model.structure, trace).items():
                    features[f"{name}/{feature}"] = values
                    grids[f"{name}/{feature}"] = grid
                    feature_owner[f"{name}/{feature}"] = (name, kind)
            if "ablation" in measures and name in ablation:
                start = time.perf_counter()
                ablation[name].update(x, labels, logits, trace.layouts, recording)
                seconds["ablation"] += time.perf_counter() - start
            del trace, recording
            if "class_sensitivity" in measures:
                start = time.perf_counter()
                sensitivity[name].update(x)
                seconds["class_sensitivity"] += time.perf_counter() - start
        if "cka" in measures:
            start = time.perf_counter()
            similarity.update(features, grids)
            seconds["cka"] += time.perf_counter() - start
        if callable(progress):
            progress(seen, len(data.dataset))
    out: dict[str, Any] = {"images": seen, "device": str(device), "class_names": data.class_names,
                           "data": data.source, "seconds": dict(seconds), "models": {}}
    for name, model in models.items():
        entry: dict[str, Any] = {"arch": model.config.arch, "size": model.config.size,
                                 "top1": 100 * correct[name] / max(seen, 1),
                                 "token_kinds": list(model.structure.token_kinds)}
        if "attention_distance" in measures:
            entry["attention_distance"] = distance[name].result()
            entry["attention_distance_uniform"] = distance[name].uniform()  # one per stream, as older files
            entry["attention_distance_uniform_layers"] = distance[name].uniform_layers()
        if "fusion_weights" in measures and name in fusion:
            entry["fusion_weights"] = fusion[name].result()
        if "ablation" in measures and name in ablation:
            entry["ablation"] = ablation[name].result()
        if "class_sensitivity" in measures:
            entry["class_sensitivity"] = sensitivity[name].result()
        out["models"][name] = entry
    if "cka" in measures and similarity.names:
        table = similarity.result()
        table["models"] = [feature_owner[n][0] for n in table["names"]]
        table["kinds"] = [feature_owner[n][1] for n in table["names"]]
        table["comparisons"] = cka_comparisons(table)
        out["cka"] = table
    return out
