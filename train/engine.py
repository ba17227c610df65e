"""The training script: ``python -m train ...`` on one process, ``torchrun --nproc_per_node=N -m train ...`` on many.

Reads like torchvision's classification reference: ``get_args_parser``, ``main(args)``,
``train_one_epoch``, ``evaluate``. Recipes come from ``train/presets.py``; any option given on the
command line wins over the preset.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from tokenfusion.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tokenfusion.data import SYNTHSHAPES_DATA, TRAIN_SEED
from tokenfusion.data.transforms import batch_mixing
from tokenfusion.models import ARCHITECTURES, KIND_DROP_KINDS, POSITION_EMBEDDINGS, WEIGHT_INITS, TokenFusionModel, create, make_config

from .data import build_datasets, build_loaders, sample_seed
from .distributed import DistributedContext, all_reduce_sum, init_distributed
from .presets import PRESETS, resolve_preset

__all__ = ["TrainState", "evaluate", "get_args_parser", "main", "train_one_epoch"]

RECIPE_KEYS = (
    "data", "size", "epochs", "batch_size", "lr", "lr_batch", "min_lr", "warmup_epochs", "weight_decay",
    "label_smoothing", "mixup", "cutmix", "randaugment", "random_erasing", "random_resized_crop",
    "ema_decay", "clip_grad", "drop_path", "kind_drop", "kind_drop_kinds", "workers", "train_samples", "val_samples", "img_size", "patch_size",
    "pos_embed", "weight_init", "pretrained_lr_scale", "patch_lr_scale",
)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a Token Fusion Lab model", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", required=True, choices=ARCHITECTURES)
    p.add_argument("--preset", required=True, help=f"one of {sorted(PRESETS)}")
    p.add_argument("--data-path", default=None, help="ImageFolder root holding train/ and val/")
    p.add_argument("--output-dir", default="runs/run", help="checkpoint.pt, model.pt and metrics.jsonl go here")
    p.add_argument("--resume", default=None, help="a checkpoint.pt to continue, or 'auto' for OUTPUT_DIR/checkpoint.pt if any")
    g = p.add_argument_group("recipe (default: from the preset)")
    g.add_argument("--size", choices=["tiny", "small", "base"], default=None)
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None, help="images per process per step")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate for a global batch of --lr-batch")
    g.add_argument("--lr-batch", type=int, default=None)
    g.add_argument("--min-lr", type=float, default=None)
    g.add_argument("--warmup-epochs", type=float, default=None)
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--label-smoothing", type=float, default=None)
    g.add_argument("--mixup", type=float, default=None, help="MixUp alpha (0: off)")
    g.add_argument("--cutmix", type=float, default=None, help="CutMix alpha (0: off)")
    g.add_argument("--randaugment", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--random-erasing", type=float, default=None)
    g.add_argument("--random-resized-crop", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--ema-decay", type=float, default=None, help="EMA of the weights (0: off)")
    g.add_argument("--clip-grad", type=float, default=None, help="max gradient norm (0: off)")
    g.add_argument("--drop-path", type=float, default=None)
    g.add_argument("--kind-drop", type=float, default=None,
                   help="fusion models: share of training images that see one kind of token alone (0: off)")
    g.add_argument("--kind-drop-kinds", choices=KIND_DROP_KINDS, default=None,
                   help="the kinds those images lose: both (half each), cnn or patch")
    g.add_argument("--workers", type=int, default=None, help="data-loading processes per training process")
    g.add_argument("--train-samples", type=int, default=None, help="SynthShapes images per epoch")
    g.add_argument("--val-samples", type=int, default=None)
    g.add_argument("--img-size", type=int, default=None, help="default: the model size's")
    g.add_argument("--patch-size", type=int, default=None, help="default: the model size's")
    g.add_argument("--weight-init", choices=WEIGHT_INITS, default=None,
                   help="the linear layers' initial weights (default: the model size's)")
    g.add_argument("--pos-embed", choices=POSITION_EMBEDDINGS, default=None,
                   help="the token modules' position embedding (default: the model size's)")
    g.add_argument("--pretrained-lr-scale", type=float, default=None,
                   help="learning rate of the parts started from --vit-weights/--trunk-weights, relative to --lr (default 1)")
    g.add_argument("--patch-lr-scale", type=float, default=None,
                   help="learning rate of the parts only patch tokens pass through, relative to the rest (default 1)")
    p.add_argument("--accum-steps", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--trunk-weights", default=None, help="torchvision ResNet-50 state dict on disk, or a cnn checkpoint of this project, for the trunk")
    p.add_argument("--vit-weights", default=None,
                   help="torchvision or timm ViT/DeiT state dict on disk, or a vit checkpoint of this project, for the patch "
                        "stream (vit, early, late, layerwise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=TRAIN_SEED, help="SynthShapes seed (validation: val_seed(data-seed))")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK when there is a GPU, else cpu")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on a GPU; --amp turns it on on a CPU too)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last images and weights (default: on a GPU; --channels-last on a CPU too)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor; on a CPU it compiles with gcc)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process")
    p.add_argument("--save-every-steps", type=int, default=0, help="also checkpoint every N optimiser steps")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps in all (smoke runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every recipe option left unset from the preset (command-line values win)."""
    recipe = resolve_preset(args.preset, args.arch)
    for key in RECIPE_KEYS:
        if getattr(args, key, None) is None:
            setattr(args, key, recipe.get(key))
    return args


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint so ``--resume`` continues exactly."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimiser steps completed in the current epoch
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # training wall time so far, over all sessions

    def to_dict(self) -> dict[str, Any]:
        return dict(epoch=self.epoch, step_in_epoch=self.step_in_epoch, global_step=self.global_step,
                    history=self.history, seconds=self.seconds)


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_ratio: float):
    """LR multiplier: linear warm-up to 1, then cosine down to ``min_ratio``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def patch_only_modules(model: TokenFusionModel) -> set[str]:
    """Top-level modules that only patch tokens pass through, as the model declares them: its
    patch-token modules and the blocks of streams that hold patch tokens alone."""
    structure = model.structure
    modules = {name.split(".")[0] for name in structure.token_modules.get("patch", ())}
    return modules | {stream.name for stream in structure.streams if stream.kinds == ("patch",)}


def param_groups(model: TokenFusionModel, weight_decay: float, lr: float, pretrained_lr_scale: float = 1.0,
                 patch_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups named ``ORIGIN[/patch]/DECAY`` (those with parameters): the parts started from files
    (``model.weight_sources``, origin ``pretrained``) learn at ``lr * pretrained_lr_scale``, the others
    (``new``) at ``lr``; the parts only patch tokens pass through (:func:`patch_only_modules`, ``/patch``)
    at ``patch_lr_scale`` times that, so that a slow patch stream can be made to learn faster
    (Wu et al., ICML 2022); no weight decay on biases, norms, embeddings, class tokens and gates."""
    skip = model.no_weight_decay()
    pretrained = {module for record in model.weight_sources.values() for module in record["modules"]}
    patch = patch_only_modules(model) if patch_lr_scale != 1.0 else set()
    groups: dict[tuple[str, str, str], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        module = name.split(".")[0]
        key = ("pretrained" if module in pretrained else "new", "/patch" if module in patch else "",
               "no_decay" if p.ndim <= 1 or name in skip else "decay")
        groups.setdefault(key, []).append(p)
    return [{"name": f"{origin}{part}/{decay}", "params": params,
             "weight_decay": weight_decay if decay == "decay" else 0.0,
             "lr": lr * (pretrained_lr_scale if origin == "pretrained" else 1.0) * (patch_lr_scale if part else 1.0)}
            for (origin, part, decay), params in sorted(groups.items())]


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` (``cuda`` or ``cpu``) when ``enabled``."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, criterion: nn.Module, mixing,
    ema: AveragedModel | None, state: TrainState, args: argparse.Namespace, ctx: DistributedContext,
    on_step,
) -> dict[str, float]:
    """One pass over ``loader`` (from ``state.step_in_epoch`` on); returns mean loss and images/s."""
    model.train()
    steps_per_epoch = len(loader.sampler) // args.batch_size // args.accum_steps + state.step_in_epoch
    total_loss = seen = 0.0
    start = time.perf_counter()
    bar = tqdm(total=steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}/{args.epochs}",
               disable=not ctx.is_main or args.no_progress, leave=False, dynamic_ncols=True)
    micro = 0
    for images, targets in loader:
        if state.step_in_epoch >= steps_per_epoch or (args.max_steps and state.global_step >= args.max_steps):
            break
        # Every random draw of a step (MixUp/CutMix, drop-path) comes from a seed of (seed, rank, step, micro).
        torch.manual_seed(sample_seed(args.seed, ctx.rank, state.global_step, micro))
        images = images.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if mixing is not None:
            images, targets = mixing(images, targets)
        last_micro = micro == args.accum_steps - 1
        sync = contextlib.nullcontext() if last_micro or not isinstance(model, DistributedDataParallel) else model.no_sync()
        with sync:
            with autocast(ctx.device, args.amp):
                loss = criterion(model(images), targets)
            (loss / args.accum_steps).backward()
        total_loss += loss.item() * len(images)
        seen += len(images)
        micro += 1
        if not last_micro:
            continue
        micro = 0
        if args.clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if ema is not None:
            ema.update_parameters(_unwrap(model))
        state.step_in_epoch += 1
        state.global_step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        on_step()
    bar.close()
    elapsed = time.perf_counter() - start
    total_loss, seen, elapsed = all_reduce_sum([total_loss, seen, elapsed], ctx)
    return {"train_loss": total_loss / max(seen, 1), "images_per_s": seen / max(elapsed / ctx.world_size, 1e-9)}


@torch.inference_mode()
def evaluate(model: nn.Module, loader, ctx: DistributedContext, num_classes: int, amp: bool = False) -> dict[str, Any]:
    """Loss, top-1 and top-5 (in %) over ``loader``, summed over ranks, and the confusion matrix
    ``(true, predicted)`` as a list of lists."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss = correct1 = correct5 = count = 0.0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for images, targets in loader:
        images, targets = images.to(ctx.device), targets.to(ctx.device)
        with autocast(ctx.device, amp):
            logits = model(images).float()
        loss += criterion(logits, targets).item()
        top = logits.topk(min(5, num_classes), dim=1).indices
        correct1 += (top[:, 0] == targets).sum().item()
        correct5 += (top == targets[:, None]).any(dim=1).sum().item()
        count += len(targets)
        confusion += torch.bincount(targets.cpu() * num_classes + top[:, 0].cpu(), minlength=num_classes**2).view(num_classes, num_classes)
    loss, correct1, correct5, count = all_reduce_sum([loss, correct1, correct5, count], ctx)
    if ctx.enabled:
        confusion = confusion.to(ctx.device)
        torch.distributed.all_reduce(confusion)
    return {"val_loss": loss / max(count, 1), "top1": 100 * correct1 / max(count, 1),
            "top5": 100 * correct5 / max(count, 1), "confusion": confusion.cpu().tolist()}


def _unwrap(model: nn.Module) -> TokenFusionModel:
    model = model.module if isinstance(model, DistributedDataParallel) else model
    return getattr(model, "_orig_mod", model)


def provenance(args: argparse.Namespace, ctx: DistributedContext) -> dict[str, Any]:
    return {
        "command": shlex.join(["python", "-m", "train", *getattr(args, "argv", sys.argv[1:])]),
        "seed": args.seed, "data_seed": args.data_seed, "world_size": ctx.world_size, "device": str(ctx.device),
        "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _resume_path(args: argparse.Namespace) -> Path | None:
    if args.resume == "auto":
        path = Path(args.output_dir) / "checkpoint.pt"
        return path if path.exists() else None
    return Path(args.resume) if args.resume else None


def main(args: argparse.Namespace) -> TokenFusionModel:
    """Train as ``args`` say and return the trained model (EMA weights when on). Writes ``checkpoint.pt`` (with resume
    state, atomically, every epoch and every ``--save-every-steps``), ``model.pt`` (the weights
    to use: EMA when on) and ``metrics.jsonl`` into ``--output-dir``."""
    args = apply_preset(args)
    if PRESETS[args.preset].get("from_pretrained") and not (args.vit_weights or args.trunk_weights):
        raise ValueError(f"Preset {args.preset} fine-tunes pretrained parts: give --vit-weights (a ViT/DeiT state dict) "
                         "and/or --trunk-weights (a ResNet-50 state dict), or train from scratch with a preset without -finetune.")
    ctx = init_distributed(args.device)
    # The GPU paths are the GPU's defaults; on a CPU they run when asked for.
    args.amp = ctx.device.type == "cuda" if args.amp is None else args.amp
    args.channels_last = ctx.device.type == "cuda" if args.channels_last is None else args.channels_last
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

    overrides: dict[str, Any] = {"drop_path_rate": args.drop_path, "kind_drop_rate": args.kind_drop or 0.0}
    if args.img_size:
        overrides["img_size"] = args.img_size
    if args.patch_size:
        overrides["patch_size"] = args.patch_size
    if args.pos_embed:
        overrides["pos_embed"] = args.pos_embed
    if args.weight_init:
        overrides["weight_init"] = args.weight_init
    if args.kind_drop_kinds:
        overrides["kind_drop_kinds"] = args.kind_drop_kinds
    # The data gives the class count, so the datasets are built from the config before the model.
    train_set, val_set, class_names = build_datasets(args, make_config(args.arch, args.size, **overrides))
    torch.manual_seed(args.seed)
    model = create(args.arch, args.size, num_classes=len(class_names), trunk_weights=args.trunk_weights,
                   vit_weights=args.vit_weights, **overrides)
    config = model.config
    model.to(ctx.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)

    train_loader, val_loader, sampler = build_loaders(args, config, train_set, val_set, ctx.rank, ctx.world_size,
                                                      pin=ctx.device.type == "cuda")
    steps_per_epoch = len(sampler) // args.batch_size // args.accum_steps
    if steps_per_epoch == 0:
        raise ValueError(f"{len(sampler)} images per process make no full batch of {args.batch_size}: lower --batch-size")
    global_batch = args.batch_size * ctx.world_size * args.accum_steps
    peak_lr = args.lr * global_batch / args.lr_batch
    lr_scale = 1.0 if args.pretrained_lr_scale is None else args.pretrained_lr_scale
    patch_scale = 1.0 if args.patch_lr_scale is None else args.patch_lr_scale
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, peak_lr, lr_scale, patch_scale))
    if ctx.is_main and model.weight_sources:
        for part, record in model.weight_sources.items():
            print(f"{part} from {record['path']} ({record['format']}): {', '.join(record['modules'])}", flush=True)
        print("parameter groups: " + ", ".join(
            f"{g['name']} {sum(p.numel() for p in g['params']) / 1e6:.2f} M at lr {g['lr']:.2e}" for g in optimizer.param_groups), flush=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(
        round(args.warmup_epochs * steps_per_epoch), args.epochs * steps_per_epoch, args.min_lr / peak_lr))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay), use_buffers=True) if args.ema_decay else None
    state = TrainState()

    resume = _resume_path(args)
    if resume is not None:
        try:
            saved = load_checkpoint(resume, arch=args.arch)
        except CheckpointError as e:
            raise SystemExit(f"Cannot resume: {e}") from None
        if saved.config != config or saved.resume is None:
            diff = {k: (v, config.to_dict()[k]) for k, v in saved.config.to_dict().items() if config.to_dict()[k] != v}
            raise SystemExit(f"Cannot resume from {resume}: " + (
                f"it was trained with another model config {diff} (saved vs now)" if diff else "it holds no resume state"))
        model.load_state_dict(saved.resume["model"])
        optimizer.load_state_dict(saved.resume["optimizer"])
        scheduler.load_state_dict(saved.resume["scheduler"])
        if ema is not None:
            ema.load_state_dict(saved.resume["ema"])
        state = TrainState(**saved.resume["state"])
        if ctx.is_main:
            print(f"Resumed from {resume}: epoch {state.epoch}, step {state.global_step}")

    if args.compile:
        model = torch.compile(model)
    if ctx.enabled:
        model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    mixing = batch_mixing(len(class_names), args.mixup, args.cutmix)
    raw = _unwrap(model)
    session_start = time.perf_counter()
    seconds_before = state.seconds

    def summary() -> dict[str, Any]:
        last = state.history[-1] if state.history else {}
        return {
            "dataset": args.data if args.data in SYNTHSHAPES_DATA else str(args.data_path), "preset": args.preset,
            "epochs": args.epochs, "epochs_done": state.epoch, "global_batch": global_batch, "peak_lr": peak_lr,
            "top1": last.get("top1"), "top5": last.get("top5"),
            "best_top1": max((h["top1"] for h in state.history), default=None),
            "train_seconds": state.seconds, "history": state.history,
            "ema": bool(ema), "train_samples": args.train_samples, "val_samples": args.val_samples,
        }

    def save(path: Path, with_resume: bool) -> None:
        state.seconds = seconds_before + time.perf_counter() - session_start
        resume_state = None
        if with_resume:
            resume_state = {"model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema else None,
                            "state": state.to_dict()}
        weights = ema.module.state_dict() if ema is not None else raw.state_dict()
        save_checkpoint(path, raw, class_names=class_names, training=summary(),
                        provenance={**provenance(args, ctx), "weights": raw.weight_sources},
                        resume=resume_state, state_dict=weights)

    def on_step() -> None:
        if ctx.is_main and args.save_every_steps and state.global_step % args.save_every_steps == 0:
            save(out / "checkpoint.pt", with_resume=True)

    eval_model = ema.module if ema is not None else raw
    while state.epoch < args.epochs and not (args.max_steps and state.global_step >= args.max_steps):
        sampler.set_epoch(state.epoch, skip=state.step_in_epoch * args.batch_size * args.accum_steps)
        stats = train_one_epoch(model, train_loader, optimizer, scheduler, criterion, mixing, ema, state, args, ctx, on_step)
        if state.step_in_epoch < steps_per_epoch:
            break  # stopped by --max-steps inside the epoch
        metrics = evaluate(eval_model, val_loader, ctx, len(class_names), args.amp)
        metrics.pop("confusion")
        state.epoch += 1
        state.step_in_epoch = 0
        state.history.append({"epoch": state.epoch, **stats, **metrics, "lr": optimizer.param_groups[0]["lr"],
                              "step": state.global_step})
        if ctx.is_main:
            # Rewritten whole each epoch, so a resumed run never repeats or loses a line.
            (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in state.history))
            h = state.history[-1]
            print(f"{args.arch} epoch {state.epoch}/{args.epochs}: loss {h['train_loss']:.3f} top1 {h['top1']:.1f}% "
                  f"top5 {h['top5']:.1f}% {h['images_per_s']:.0f} img/s", flush=True)
            save(out / "checkpoint.pt", with_resume=True)
    if ctx.is_main:
        if args.max_steps and state.step_in_epoch:
            save(out / "checkpoint.pt", with_resume=True)
        save(out / "model.pt", with_resume=False)
    if ctx.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return eval_model
