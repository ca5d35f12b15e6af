"""The LSeg training loop (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3-4).

Frozen text encoder, label embeddings computed once per data set, pixel-wise cross-entropy
over temperature-scaled logits at full resolution, several data sets with their own label
lists in one run (each batch comes from one data set), held-out labels for the zero-shot
protocol, periodic validation with best-model selection on mIoU, resumable checkpoints and
deterministic batches (the batch of iteration ``i`` depends only on ``seed`` and ``i``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import augment, build_dataset, normalize_image
from ..model.device import resolve_device
from .config import DatasetConfig, TrainConfig
from .distributed import DistContext, all_reduce_sum, convert_global_batchnorm, init_distributed
from .loss import class_weights_from_counts, lovasz_sum, lseg_loss_terms
from .metrics import ConfusionMatrix

__all__ = ["TrainSet", "Trainer", "build_lr_lambda", "evaluate_model", "train"]

_LOG = logging.getLogger(__name__)


@dataclass
class TrainSet:
    """A data set with the label list the model trains on (held-out names removed)."""

    dataset: Any
    names: list[str]  # training label names, index = training label id
    lut: np.ndarray  # dataset label id -> training label id or ignore
    ignore_index: int
    weight: float
    class_weights: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    wording_bank: Any = None  # a WordingBank when the data set samples wordings per step


def _make_dataset(cfg: DatasetConfig, cache: bool | None = None):
    args = dict(cfg.args)
    if cfg.names is not None:
        args["names"] = list(cfg.names)
    if cache is not None and "cache" not in args:
        args["cache"] = cache
    return build_dataset(cfg.type, **args)


def build_train_set(cfg: DatasetConfig) -> TrainSet:
    ds = _make_dataset(cfg)
    unknown = [n for n in cfg.holdout if n not in ds.names]
    if unknown:
        raise ValueError(f"holdout names {unknown} are not labels of {ds.name} ({ds.names})")
    names = [n for n in ds.names if n not in cfg.holdout]
    lut = np.full(len(ds.names), ds.ignore_index, np.int64)
    for new, n in enumerate(names):
        lut[ds.names.index(n)] = new
    weights = None
    if cfg.class_weighting != "none":
        counts = ds.class_pixel_counts()
        kept = np.array([counts[ds.names.index(n)] for n in names])
        weights = torch.from_numpy(class_weights_from_counts(kept, cfg.class_weighting, cfg.max_class_weight))
    return TrainSet(ds, names, lut, ds.ignore_index, float(cfg.weight), weights)


def build_lr_lambda(optim, iterations: int):
    """Multiplier of the base lr at iteration ``it``: linear warm-up, then poly/cosine/constant."""

    def factor(it: int) -> float:
        if optim.warmup_iters and it < optim.warmup_iters:
            return (it + 1) / optim.warmup_iters
        t = min(1.0, (it - optim.warmup_iters) / max(1, iterations - optim.warmup_iters))
        if optim.schedule == "poly":
            return (1.0 - t) ** optim.power
        if optim.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return factor


def evaluate_model(segmenter, dataset, names=None, progress: bool = False, max_images: int | None = None,
                   desc: str = "eval") -> dict:
    """mIoU etc. of a :class:`lang_seg_ros.inference.Segmenter` on a data set (label names:
    ``names`` or the data set's), through ``segmenter.segment`` exactly as ``lang-seg segment``
    runs it: same preprocessing, same single- or multi-scale rule."""
    from ..inference import Segmenter

    if not isinstance(segmenter, Segmenter):
        raise TypeError(f"evaluate_model takes a Segmenter, got {type(segmenter).__name__}")
    if segmenter.threshold > 0:
        raise ValueError("evaluate with a Segmenter whose threshold is 0: every pixel needs a label")
    names = list(names) if names is not None else list(dataset.names)
    conf = ConfusionMatrix(names, dataset.ignore_index)
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    iterator = range(count)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=desc, unit="img")
    for i in iterator:
        image, mask = dataset.load(i)
        result = segmenter.segment(image, color_order="rgb", labels=names)
        if len(result.labels) != len(names):  # the label policy may not drop or merge names
            raise ValueError(f"label names {names} became {list(result.labels)}")
        conf.update(result.label_map, mask)
    return conf.summary()


class _WeightAverage:
    """An exponential moving average of an LSeg's image branch (timm's ModelEmaV3 over the image
    encoder and the decoder; the frozen text encoder, 23 M of the default model's 26 M parameters,
    is shared, not averaged: averaging it cost 0.45 s a step on 2 CPU cores). `model` is an LSeg
    with the averaged modules, the one validated and saved."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        from timm.utils import ModelEmaV3

        self._live = torch.nn.ModuleDict({"pretrained": model.pretrained, "scratch": model.scratch})
        self._ema = ModelEmaV3(self._live, decay=decay)
        self.model = copy.copy(model)  # a shell: its own module table, the text encoder shared
        self.model._modules = {**model._modules, **self._ema.module}
        self.model.eval()

    def update(self, step: int) -> None:
        """After optimiser step `step` (1-based): the first copies the weights."""
        self._ema.update(self._live, step=step)


class Trainer:
    """Runs a :class:`TrainConfig`. ``Trainer(cfg).fit()`` returns the best validation metrics
    (or the last training loss when there is no validation set).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process runs a Trainer: each computes its
    slice of the same global batch, gradients are averaged by DDP, BatchNorm uses global-batch
    statistics, and only rank 0 validates, logs and writes files (see ``distributed.py``)."""

    def __init__(self, cfg: TrainConfig, progress: bool = True, resume: bool = True) -> None:
        from ..model import build_model, load_checkpoint

        self.cfg = cfg
        self.progress = progress
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        try:  # augmentation runs in one prefetch thread; keep OpenCV from spawning more
            import cv2

            cv2.setNumThreads(1)
        except ImportError:  # pragma: no cover
            pass
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.dist: DistContext = init_distributed(self.device)
        if self.dist.enabled:
            if cfg.batch_size % self.dist.world_size:
                raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the {self.dist.world_size} processes")
            if self.device.type == "cuda":  # one GPU per process
                self.device = torch.device("cuda", self.dist.local_rank)
                torch.cuda.set_device(self.device)
        self.out_dir = Path(cfg.out_dir)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)

        if cfg.init_checkpoint:
            model = load_checkpoint(cfg.init_checkpoint, **cfg.model_overrides)  # a path or an embedded name
        else:
            model = build_model(cfg.model, **cfg.model_overrides)
        if cfg.init_backbone == "imagenet":
            from ..model.timm_cnn import load_efficientnet_lite0_imagenet

            load_efficientnet_lite0_imagenet(model.pretrained)
        elif cfg.init_backbone not in (None, "", "none"):
            raise ValueError(f"init_backbone must be 'imagenet' or null, got {cfg.init_backbone!r}")
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

        self.sets = [build_train_set(d) for d in cfg.datasets]
        # Training encodes every name and wording as it is (the image branch learns those vectors);
        # the vocabulary set below only grounds unseen labels at validation and in the saved file.
        self.model.config.text_encoder = replace(self.model.config.text_encoder, vocabulary=(), negatives=())
        # Referring thresholds were chosen for the weights this run starts from, not for its own
        # (`LSegConfig.referring`): choose them again with `lang-seg eval-refer --save-chosen`.
        self.model.config.referring = {}
        # Frozen text encoder: label embeddings (and every sampled wording's) once per data set.
        for i, (s, dcfg) in enumerate(zip(self.sets, cfg.datasets)):
            with torch.no_grad():
                s.text_features = self.model.encode_text(s.names).to(self.device)
            if s.class_weights is not None:
                s.class_weights = s.class_weights.to(self.device)
            if dcfg.wordings is not None:
                from .wordings import build_wording_bank

                s.wording_bank = build_wording_bank(dcfg.wordings, s.names, self.model.encode_text).to(self.device)
                bank = s.wording_bank
                if self.dist.is_main:
                    (self.out_dir / f"wordings_{i}.json").write_text(json.dumps({
                        "class_wordings": dict(zip(s.names, bank.class_wordings)), "templates": bank.templates,
                        "negatives": bank.negatives, "dropped_negatives": bank.dropped_negatives,
                        "negatives_per_step": bank.negatives_per_step, "prompts": len(bank.prompts)}, indent=1))
        # What the image branch learns from, saved with it (`model.grounding`): each class's name and
        # wordings, and the negatives it learnt to give no pixels. Checked now, not when saving.
        self.model.config.text_encoder = replace(
            self.model.config.text_encoder,
            vocabulary=tuple(tuple(words) for s in self.sets for words in (
                s.wording_bank.class_wordings if s.wording_bank is not None else [[n] for n in s.names])),
            negatives=tuple(dict.fromkeys(n for s in self.sets if s.wording_bank is not None
                                          for n in s.wording_bank.negatives)))
        self.val_set = _make_dataset(cfg.val, cache=True) if cfg.val is not None else None

        backbone = [p for p in self.model.pretrained.parameters() if p.requires_grad]
        ids = {id(p) for p in backbone}
        text_ids = {id(p) for p in self.model.text_encoder.parameters()}
        decoder = [p for p in self.model.parameters()
                   if p.requires_grad and id(p) not in ids and id(p) not in text_ids]
        groups = []
        o = cfg.optim
        for params, mult in ((backbone, o.backbone_lr_mult), (decoder, 1.0)):
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            groups.append({"params": decay, "lr": o.lr * mult, "weight_decay": o.weight_decay, "base_lr": o.lr * mult})
            groups.append({"params": no_decay, "lr": o.lr * mult, "weight_decay": 0.0, "base_lr": o.lr * mult})
        if o.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))
        self.lr_factor = build_lr_lambda(o, cfg.iterations)
        # The weights validated and saved: the model, or an average of its recent weights
        self.ema = _WeightAverage(self.model, o.ema_decay) if o.ema_decay > 0 else None

        self.iteration = 0
        self.cursors = [0] * len(self.sets)
        self.best = {"miou": -1.0}
        self.history: list[dict] = []
        if resume and (self.out_dir / "last.pt").is_file():
            self._load_state(self.out_dir / "last.pt")
        self.net: torch.nn.Module = self.model  # what the training step calls: the model, or DDP around it
        if self.dist.enabled:
            convert_global_batchnorm(self.model)
            # static_graph: the same parameters are used every step, some never (e.g. the first
            # fusion block's skip unit): DDP learns that set once instead of searching each step.
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                static_graph=True)

    # -- batches ---------------------------------------------------------------------------
    def _next_index(self, d: int, cursors: list[int]) -> int:
        n = len(self.sets[d].dataset)
        epoch, pos = divmod(cursors[d], n)
        cursors[d] += 1
        return int(np.random.default_rng([self.cfg.seed, d, epoch]).permutation(n)[pos])

    def _make_batch(self, it: int, cursors: list[int]):
        """This process's share of the batch of iteration ``it``: deterministic in (seed, it,
        cursors). Sample ``j`` of the global batch has its own random stream, so a process that
        computes samples ``[r*B/N, (r+1)*B/N)`` gets exactly those samples of the one-process batch."""
        rng = np.random.default_rng([self.cfg.seed, 1_000_003, it])
        probs = np.array([s.weight for s in self.sets], np.float64)
        d = int(rng.choice(len(self.sets), p=probs / probs.sum())) if len(self.sets) > 1 else 0
        s = self.sets[d]
        mean, std = self.model.config.mean, self.model.config.std
        indices = [self._next_index(d, cursors) for _ in range(self.cfg.batch_size)]  # every rank advances
        share = self.cfg.batch_size // self.dist.world_size
        mine = range(self.dist.rank * share, (self.dist.rank + 1) * share)
        images, masks = [], []
        for j in mine:
            image, mask = s.dataset.load(indices[j])
            mask = np.where(mask == s.ignore_index, s.ignore_index, s.lut[np.clip(mask, 0, len(s.lut) - 1)])
            sample_rng = np.random.default_rng([self.cfg.seed, 1_000_003, it, j])
            image, mask = augment(image, mask, self.cfg.augment, s.ignore_index, sample_rng)
            images.append(normalize_image(image, mean, std))
            masks.append(mask)
        x = torch.from_numpy(np.stack(images))
        y = torch.from_numpy(np.stack(masks))
        return d, x, y, list(cursors)

    # -- state -----------------------------------------------------------------------------
    @property
    def evaluated_model(self):
        """The model validation scores and checkpoints hold: the weight average with `ema_decay`."""
        return self.ema.model if self.ema is not None else self.model

    def _state(self) -> dict:
        return {
            "model": self.model.checkpoint_state_dict(),
            "ema": self.ema.model.checkpoint_state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "cursors": self.cursors,
            "best": self.best,
            "history": self.history,
            "config": asdict(self.cfg),
        }

    def _load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        text_prefix = self.model.text_encoder.checkpoint_prefix + "."
        missing = [k for k in missing if not k.startswith(text_prefix)]
        if missing or unexpected:
            raise RuntimeError(f"{path}: resume state does not fit the model (missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}); use another out_dir or delete it")
        if self.ema is not None:
            if state.get("ema") is None:
                raise RuntimeError(f"{path}: saved without optim.ema_decay; resume with the same config")
            missing, unexpected = self.ema.model.load_state_dict(state["ema"], strict=False)
            missing = [k for k in missing if not k.startswith(text_prefix)]
            if missing or unexpected:
                raise RuntimeError(f"{path}: the saved weight average does not fit the model (missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]})")
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.cursors = list(state["cursors"])
        self.best = state["best"]
        self.history = state.get("history", [])
        _LOG.info("resumed from %s at iteration %d", path, self.iteration)

    def save_resumable(self) -> None:
        if not self.dist.is_main:  # every rank holds the same state; one writes it
            return
        tmp = self.out_dir / "last.pt.tmp"
        torch.save(self._state(), tmp)
        os.replace(tmp, self.out_dir / "last.pt")

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if not self.dist.is_main:
            return
        with open(self.out_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- loop ------------------------------------------------------------------------------
    def validate(self) -> dict | None:
        if self.val_set is None:
            return None
        from ..inference import Segmenter

        t0 = time.perf_counter()
        # The model as `lang-seg eval` / `lang-seg segment` would run it (fp32), so the best
        # checkpoint is chosen on the numbers those commands report.
        model = self.evaluated_model
        was_training = model.training
        scales = None if tuple(self.cfg.val_scales) == (1.0,) else self.cfg.val_scales
        segmenter = Segmenter(model, device=str(self.device), working_size=self.cfg.val_working_size,
                              scales=scales, flip=self.cfg.val_flip)
        try:
            metrics = evaluate_model(segmenter, self.val_set)
            if self.cfg.val_wordings:
                from ..data import read_names

                metrics["wording_miou"] = {}
                for path in self.cfg.val_wordings:
                    names = read_names(path)
                    metrics["wording_miou"][Path(path).stem] = evaluate_model(segmenter, self.val_set, names)["miou"]
        finally:  # the Segmenter put the model in eval mode and channels_last
            model.train(was_training)
            model.to(memory_format=torch.channels_last if self.cfg.channels_last else torch.contiguous_format)
        metrics.pop("confusion_matrix", None)
        metrics["seconds"] = time.perf_counter() - t0
        return metrics

    def _save_best(self, metrics: dict) -> None:
        from ..model import save_checkpoint

        model = self.evaluated_model.to(memory_format=torch.contiguous_format)
        # the training names, first data set first, each once: what the model knows (its referring vocabulary)
        names = list(dict.fromkeys(name for s in self.sets for name in s.names))
        save_checkpoint(model, self.out_dir / "best.safetensors", labels=names)
        if self.cfg.export:
            dtype = getattr(torch, self.cfg.export_dtype)
            Path(self.cfg.export).parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(model, self.cfg.export, dtype=dtype, labels=names)
        if self.cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        (self.out_dir / "best_metrics.json").write_text(json.dumps(metrics, indent=2))

    def _plot_curve(self) -> None:
        """Redraw ``curve.png`` (loss and val mIoU); a plotting failure never stops training."""
        from .curves import plot_training_curve

        try:
            plot_training_curve(self.out_dir / "log.jsonl", self.out_dir / "curve.png")
        except Exception as exc:  # noqa: BLE001 - a curve is a convenience, the run is not
            _LOG.warning("could not draw the training curve: %s", exc)

    def fit(self) -> dict:
        cfg = self.cfg
        self.model.train()
        pool = ThreadPoolExecutor(1) if cfg.prefetch else None
        pending_cursors = list(self.cursors)

        def submit(it):
            if pool is None:
                return _Done(self._make_batch(it, pending_cursors))
            return pool.submit(self._make_batch, it, pending_cursors)

        bar = None
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.iterations, initial=self.iteration, desc="train", unit="it", dynamic_ncols=True)
        future = submit(self.iteration) if self.iteration < cfg.iterations else None
        last_loss = float("nan")
        t_last = time.perf_counter()
        smoothed = None
        try:
            while self.iteration < cfg.iterations:
                it = self.iteration
                d, x, y, cursors = future.result()
                future = submit(it + 1) if it + 1 < cfg.iterations else None
                factor = self.lr_factor(it)
                for g in self.optimizer.param_groups:
                    g["lr"] = g["base_lr"] * factor
                x = x.to(self.device, non_blocking=True)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = y.to(self.device, non_blocking=True)
                s = self.sets[d]
                text = s.text_features
                if s.wording_bank is not None:  # this step's wordings + negatives, (N + K, C)
                    text, _ = s.wording_bank.sample(np.random.default_rng([cfg.seed, 2_000_003, it]))
                with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                    enabled=cfg.amp and self.device.type == "cuda"):
                    logits = self.net(x, text)
                total, count = lseg_loss_terms(logits, y, s.ignore_index, s.class_weights,
                                               cfg.loss.ohem_thresh, cfg.loss.ohem_min_kept)
                # Normalise by the whole batch's pixel weight; x world_size because DDP averages
                # gradients over processes: the gradient is then the one-process gradient.
                count = all_reduce_sum(count, self.dist)
                scale = self.dist.world_size / count if count > 0 else 0.0
                objective = total * scale
                loss = all_reduce_sum(total.detach(), self.dist) / count if count > 0 else total.detach() * 0.0
                if cfg.loss.lovasz_weight > 0:  # + weight x mean over the global batch's images
                    stride = cfg.loss.lovasz_stride
                    offset = tuple(np.random.default_rng([cfg.seed, 3_000_017, it]).integers(0, stride, 2))
                    lov = lovasz_sum(logits, y, s.ignore_index, stride, offset)  # this rank's images
                    objective = objective + cfg.loss.lovasz_weight * lov * (self.dist.world_size / cfg.batch_size)
                    loss = loss + cfg.loss.lovasz_weight * all_reduce_sum(lov.detach(), self.dist) / cfg.batch_size
                self.optimizer.zero_grad(set_to_none=True)
                objective.backward()
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in self.optimizer.param_groups for p in g["params"]], cfg.optim.grad_clip)
                self.optimizer.step()
                self.iteration = it + 1
                if self.ema is not None:
                    self.ema.update(self.iteration)
                self.cursors = cursors
                last_loss = float(loss.detach())
                smoothed = last_loss if smoothed is None else 0.9 * smoothed + 0.1 * last_loss
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{smoothed:.3f}", lr=f"{cfg.optim.lr * factor:.2e}")
                if self.iteration % cfg.log_every == 0 or self.iteration == cfg.iterations:
                    now = time.perf_counter()
                    n = cfg.log_every if self.iteration % cfg.log_every == 0 else 1
                    self._log({"iteration": self.iteration, "loss": last_loss, "loss_smooth": smoothed,
                               "lr": cfg.optim.lr * factor, "s_per_it": (now - t_last) / n, "dataset": d})
                    t_last = now
                final = self.iteration == cfg.iterations
                if (cfg.val_every and self.iteration % cfg.val_every == 0) or final:
                    metrics = self.validate() if self.dist.is_main else None  # rank 0 validates ...
                    if metrics is not None:
                        record = {"iteration": self.iteration, "val_miou": metrics["miou"],
                                  "val_pixel_accuracy": metrics["pixel_accuracy"],
                                  "val_per_class_iou": metrics["per_class_iou"],
                                  "val_wording_miou": metrics.get("wording_miou"),
                                  "val_seconds": metrics["seconds"]}
                        self._log(record)
                        if bar is not None:
                            bar.write(f"iter {self.iteration}: val mIoU {metrics['miou']:.4f}  "
                                      f"pixel acc {metrics['pixel_accuracy']:.4f}")
                        if metrics["miou"] is not None and metrics["miou"] > self.best["miou"]:
                            self.best = {"iteration": self.iteration, **metrics}
                            self._save_best(self.best)
                    elif final:
                        self.best = {"iteration": self.iteration, "miou": None, "loss": last_loss}
                        if self.dist.is_main:
                            self._save_best(self.best)
                    if self.dist.is_main:
                        self._plot_curve()
                    self.dist.barrier()  # ... while the others wait
                    t_last = time.perf_counter()
                if self.iteration % cfg.checkpoint_every == 0 or final:
                    self.save_resumable()
        finally:
            if bar is not None:
                bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.best.setdefault("last_loss", last_loss)
        return self.best


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def train(config, progress: bool = True, resume: bool = True, **overrides) -> dict:
    """Train from a YAML path, dict or :class:`TrainConfig`; returns the best metrics."""
    from .config import load_train_config

    cfg = config if isinstance(config, TrainConfig) else load_train_config(config, **overrides)
    return Trainer(cfg, progress=progress, resume=resume).fit()
