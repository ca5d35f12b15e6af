"""Train Locate-Then-Segment (arXiv 2103.16284) on a RefCOCO-family data set, or on synthetic scenes.

    python -m lang_seg_ros.train.lts --config configs/referring/lts_refcoco.yaml

Choices (recorded here and in docs/referring.md):
- Optimiser: AdamW (default) or SGD with momentum; the LTS head at `lr`, a fine-tuned encoder
  at `lr * encoder_lr_mult`; poly / cosine / constant schedule after a linear warm-up. AdamW
  converges within the short budgets a CPU or single GPU allows; the paper's schedule is not
  reproduced.
- Inputs: the long side resized to `image_size`, padded bottom/right to a square multiple of 32
  (padding = the normalisation mean, i.e. 0 after normalising). No flips: they would swap
  "left" and "right" in the expressions.
- Validation: masks thresholded at `threshold` on the probabilities mapped back to the original
  image size, scored against the original masks (`lang_seg_ros.referring.metrics.ReferringMetrics`).
- Determinism: seeds for python, numpy and torch; the sample order of epoch e is a permutation
  drawn from (seed, e); data loading in worker processes does not change it.
- Checkpoints: `last.safetensors` after every validation, `best.safetensors` on the best overall
  IoU, LTS weights only (the LSeg model is referenced by the config), see
  `lang_seg_ros.model.lts.save_lts`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..model.device import resolve_device
from ..inference.preprocess import square_input
from ..model.lts import LocateThenSegment, lts_config, lts_loss, save_lts
from ..weights import EMBEDDED_MODELS
from ..referring.metrics import ReferringMetrics

__all__ = ["DataConfig", "LTSTrainConfig", "OptimConfig", "build_dataset", "evaluate", "load_config",
           "train"]

_LOG = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """type: "refcoco" (args: root, dataset [refcoco | refcoco+ | refcocog], split_by, image_dir,
    text_field), "synthetic" (args: length, size, seed, max_objects, positional) or "camvid"
    (expressions generated from label maps, `lang_seg_ros.data.referring_camvid`; args: root,
    seed, min_area, absent, limit).
    val_args: replaces `args` keys for the validation set (e.g. a synthetic `length`)."""

    type: str = "refcoco"
    args: dict[str, Any] = field(default_factory=dict)
    val_args: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    image_size: int = 320  # long side after resizing (then padded to a square multiple of 32)
    max_val_samples: int = 0  # validate on the first N samples; 0 = all


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # "adamw" | "sgd" (momentum)
    lr: float = 1e-3  # LTS head
    encoder_lr_mult: float = 0.1  # fine-tuned encoder lr = lr * this (ignored when frozen)
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    schedule: str = "poly"  # "poly" ((1 - it/iterations) ** power) | "cosine" | "constant"
    power: float = 0.9
    warmup_iters: int = 0
    grad_clip: float = 0.0  # max global gradient norm; 0 = off


@dataclass
class LTSTrainConfig:
    """lseg: a registry name (random init: tests only), a checkpoint path, an embedded model's
    name ("default", "default-large"), or None for the embedded default model. lts: `name` of an LTS config ("lts", "lts_tiny") + field overrides."""

    lseg: str | None = None
    lts: dict[str, Any] = field(default_factory=lambda: {"name": "lts"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    iterations: int = 20000
    batch_size: int = 8
    val_every: int = 2000  # also validated after the last iteration
    val_at_start: bool = False  # also validate the untrained model (result key "initial")
    threshold: float = 0.5  # probability above which a pixel is the referred object
    output_dir: str = "runs/lts"
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = _dataclass_from_dict(DataConfig, self.data, "data.")
        if isinstance(self.optim, dict):
            self.optim = _dataclass_from_dict(OptimConfig, self.optim, "optim.")
        if self.optim.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optim.optimizer must be 'adamw' or 'sgd', got {self.optim.optimizer!r}")
        if self.optim.schedule not in ("poly", "cosine", "constant"):
            raise ValueError(f"optim.schedule must be 'poly', 'cosine' or 'constant', got {self.optim.schedule!r}")
        if self.data.type not in ("refcoco", "synthetic", "camvid"):
            raise ValueError(f"data.type must be 'refcoco', 'synthetic' or 'camvid', got {self.data.type!r}")
        for name in ("iterations", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data.image_size < 32:
            raise ValueError(f"data.image_size must be >= 32, got {self.data.image_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _dataclass_from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {[prefix + k for k in unknown]}")
    return cls(**data)


def load_config(path: str | Path) -> LTSTrainConfig:
    """YAML -> config; relative paths (`lseg` unless a registry or embedded model's name, `data.args.root` and
    `image_dir`, `output_dir`) are resolved against the YAML file's folder."""
    import yaml

    from ..model import list_models

    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    base = path.resolve().parent

    def resolve(value: str) -> str:
        return value if Path(value).is_absolute() else str(base / value)

    if data.get("lseg") and data["lseg"] not in list_models() and data["lseg"] not in EMBEDDED_MODELS:
        data["lseg"] = resolve(data["lseg"])
    args = data.get("data", {}).get("args", {})
    for key in ("root", "image_dir"):
        if args.get(key):
            args[key] = resolve(args[key])
    if data.get("output_dir"):
        data["output_dir"] = resolve(data["output_dir"])
    return _dataclass_from_dict(LTSTrainConfig, data)


def build_dataset(cfg: DataConfig, split: str):
    """The train or validation data set a `DataConfig` names."""
    args = dict(cfg.args)
    if split == cfg.val_split:
        args.update(cfg.val_args)
    if cfg.type == "synthetic":
        from ..data.referring_synthetic import SyntheticReferring

        return SyntheticReferring(split=split, **args)
    if cfg.type == "camvid":
        from ..data.referring_camvid import CamVidReferring

        return CamVidReferring(split=split, **args)
    from ..data.refcoco import RefCOCO

    return RefCOCO.from_root(split=split, **args)


def _prepare_mask(mask: np.ndarray, valid: tuple[int, int], side: int) -> torch.Tensor:
    nh, nw = valid
    resized = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((side, side), np.float32)
    out[:nh, :nw] = resized
    return torch.from_numpy(out)


class _Prepared(torch.utils.data.Dataset):
    """Samples as (image (3, S, S), mask (S, S), sentence) tensors for the DataLoader."""

    def __init__(self, dataset, size: int, mean, std) -> None:
        self.dataset, self.size, self.mean, self.std = dataset, size, mean, std

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, sentence, mask = self.dataset[index]
        x, valid = square_input(image, self.size, self.mean, self.std)
        return x, _prepare_mask(mask, valid, x.shape[-1]), sentence


@torch.no_grad()
def evaluate(model: LocateThenSegment, dataset, image_size: int, threshold: float = 0.5,
             max_samples: int = 0, batch_size: int = 8) -> dict[str, float | int]:
    """Overall / mean IoU and precision@0.5..0.9 of `model` on `dataset` at the original image
    sizes, plus `loss` (`lts_loss` at the prepared size, mean over batches)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mean, std = model.lseg_config.mean, model.lseg_config.std
    metrics, losses = ReferringMetrics(), []
    count = len(dataset) if max_samples <= 0 else min(max_samples, len(dataset))
    for start in range(0, count, batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, count))]
        prepared = [square_input(s.image, image_size, mean, std) for s in samples]
        images = torch.stack([p[0] for p in prepared]).to(device)
        masks = torch.stack([_prepare_mask(s.mask, p[1], images.shape[-1]) for s, p in zip(samples, prepared)])
        prior, mask_logits = model(images, [s.sentence for s in samples])
        losses.append(lts_loss(prior, mask_logits, masks.to(device), model.config)[1]["total"])
        probs = torch.sigmoid(F.interpolate(mask_logits.float(), size=images.shape[-2:], mode="bilinear",
                                            align_corners=False))[:, 0].cpu()
        for sample, (_, (nh, nw)), prob in zip(samples, prepared, probs):
            h, w = sample.mask.shape
            prob = F.interpolate(prob[None, None, :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)
            metrics.update(prob[0, 0].numpy() > threshold, sample.mask > 0)
    model.train(was_training)
    return {**metrics.compute(), "loss": float(np.mean(losses)) if losses else float("nan")}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_lseg(spec: str | None):
    from ..model import build_model, list_models, load_checkpoint

    if spec in list_models():
        _LOG.warning("LSeg %r is randomly initialised: for tests only", spec)
        return build_model(spec)
    return load_checkpoint(spec)  # None / "default" / "default-large": embedded


def _lr_factor(optim: OptimConfig, iterations: int):
    def factor(it: int) -> float:
        if optim.warmup_iters and it < optim.warmup_iters:
            return (it + 1) / optim.warmup_iters
        t = min(1.0, it / max(1, iterations))
        if optim.schedule == "poly":
            return (1 - t) ** optim.power
        if optim.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    return factor


def build_optimizer(model: LocateThenSegment, optim: OptimConfig) -> torch.optim.Optimizer:
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
    groups = [{"params": head, "lr": optim.lr}]
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder:
        groups.append({"params": encoder, "lr": optim.lr * optim.encoder_lr_mult})
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    return torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)


def train(cfg: LTSTrainConfig | dict[str, Any] | str | Path) -> dict[str, Any]:
    """Train; returns the last validation's metrics plus `best_overall_iou`, `best_checkpoint`,
    `iterations`, `train_loss` (mean over the last validation interval) and, with
    `val_at_start`, `initial` (the untrained model's metrics)."""
    from tqdm import tqdm

    if isinstance(cfg, (str, Path)):
        cfg = load_config(cfg)
    elif isinstance(cfg, dict):
        cfg = _dataclass_from_dict(LTSTrainConfig, cfg)
    _seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    lts_args = dict(cfg.lts)
    model = LocateThenSegment(lts_config(lts_args.pop("name", "lts"), **lts_args), _load_lseg(cfg.lseg)).to(device)
    train_set = _Prepared(build_dataset(cfg.data, cfg.data.train_split), cfg.data.image_size,
                          model.lseg_config.mean, model.lseg_config.std)
    val_set = build_dataset(cfg.data, cfg.data.val_split)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg.optim, cfg.iterations))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (out / "metrics.jsonl").write_text("")

    def batches():
        epoch = 0
        while True:
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_set)).tolist()
            loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, sampler=order,
                                                 num_workers=cfg.num_workers, drop_last=len(train_set) >= cfg.batch_size)
            yield from loader
            epoch += 1

    best, result, losses, initial = -1.0, {}, [], None
    if cfg.val_at_start:
        initial = evaluate(model, val_set, cfg.data.image_size, cfg.threshold, cfg.data.max_val_samples)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({**initial, "iterations": 0}) + "\n")
    model.train()
    stream = batches()
    bar = tqdm(range(cfg.iterations), disable=not cfg.progress, desc="LTS")
    for it in bar:
        images, masks, sentences = next(stream)
        prior, mask = model(images.to(device), list(sentences))
        loss, parts = lts_loss(prior, mask, masks.to(device), model.config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(parts["total"])
        bar.set_postfix(loss=f"{parts['total']:.3f}", prior=f"{parts['prior']:.3f}")
        if (it + 1) % cfg.val_every == 0 or it + 1 == cfg.iterations:
            result = evaluate(model, val_set, cfg.data.image_size, cfg.threshold, cfg.data.max_val_samples)
            result.update(iterations=it + 1, train_loss=float(np.mean(losses)))
            losses = []
            save_lts(model, out / "last.safetensors")
            if result["overall_iou"] > best:
                best = result["overall_iou"]
                save_lts(model, out / "best.safetensors")
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(result) + "\n")
            _LOG.info("iteration %d: %s", it + 1, result)
    result.update(best_overall_iou=best, best_checkpoint=str(out / "best.safetensors"))
    if initial is not None:
        result["initial"] = initial
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train Locate-Then-Segment on RefCOCO-style data.")
    parser.add_argument("--config", required=True, help="YAML training config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(json.dumps(train(load_config(args.config)), indent=2))


if __name__ == "__main__":
    main()
