"""The schema of a checkpoint's ``training`` record: what training wrote, read by the model card and the report."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["HeldOut", "TrainingRecord"]


@dataclass(frozen=True)
class HeldOut:
    """Accuracy on held-out SynthShapes images (``train.teach``): ``top1``/``top5`` in percent, and on
    each cue alone (``shape``, ``texture``: the prediction's shape, or texture, is right)."""

    seed: int
    samples: int
    top1: float
    top5: float | None = None
    shape: float | None = None
    texture: float | None = None


@dataclass(frozen=True)
class TrainingRecord:
    """What ``python -m train`` records in every checkpoint it writes (all optional: a checkpoint
    saved by hand has none). Accuracies are percent on the validation split; ``history`` has one
    dict per epoch (``epoch``, ``top1``, ``top5``, ``loss``, ``lr``, ``images_per_s``...)."""

    dataset: str | None = None
    preset: str | None = None
    epochs: int | None = None
    epochs_done: int | None = None
    global_batch: int | None = None
    peak_lr: float | None = None
    top1: float | None = None
    top5: float | None = None
    best_top1: float | None = None
    train_seconds: float | None = None
    ema: bool | None = None
    train_samples: int | None = None
    val_samples: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    heldout: HeldOut | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainingRecord:
        """The record of a checkpoint's ``training`` dict; keys this version does not know are ignored
        (a newer checkpoint still shows what this version understands)."""
        data = data or {}
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        held = values.get("heldout")
        if isinstance(held, dict):
            held_known = {f.name for f in fields(HeldOut)}
            values["heldout"] = HeldOut(**{k: v for k, v in held.items() if k in held_known})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def images_per_second(self) -> float | None:
        """Mean training throughput over the epochs, or None without a history."""
        speeds = [h["images_per_s"] for h in self.history if "images_per_s" in h]
        return sum(speeds) / len(speeds) if speeds else None
