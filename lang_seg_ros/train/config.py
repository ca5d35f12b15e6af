"""Training configuration: YAML -> dataclasses, failing with a ``ValueError`` naming the bad field.

Every field is documented in ``docs/training.md`` and commented in ``configs/train/*.yaml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.transforms import AugmentConfig
from ..weights import EMBEDDED_MODELS
from .wordings import WordingConfig

__all__ = ["DatasetConfig", "LossConfig", "OptimConfig", "TrainConfig", "WordingConfig", "load_train_config"]


@dataclass
class DatasetConfig:
    """One data set of the mix. ``type`` names a registered layout (``camvid``, ``ade20k``,
    ``folder``, ...); ``args`` are that layout's keyword arguments (``root``, ``split``, ...).

    names: replace the layout's label names (same indices), e.g. other wordings.
    holdout: label names removed from training (zero-shot protocol): their pixels are ignored
        and their names never shown to the model.
    weight: relative probability of drawing a batch from this data set.
    class_weighting: ``none`` (the paper) | ``median_frequency`` | ``sqrt_median_frequency``.
    wordings: name each class per step by a sampled wording + template and add negative labels
        (:class:`lang_seg_ros.train.wordings.WordingConfig`); null = the data set's names only.
    """

    type: str = "folder"
    args: dict[str, Any] = field(default_factory=dict)
    names: list[str] | None = None
    holdout: list[str] = field(default_factory=list)
    weight: float = 1.0
    class_weighting: str = "none"
    max_class_weight: float = 10.0
    wordings: WordingConfig | None = None


@dataclass
class LossConfig:
    """Pixel selection of the loss.

    ohem_thresh: online hard example mining: only pixels whose true-label probability is below
        this count (0 = off, every valid pixel counts, the paper); see ``ohem_keep_mask``.
    ohem_min_kept: with OHEM, at least this many of the hardest valid pixels per image count.
    lovasz_weight: adds this times the Lovasz-softmax loss (Berman et al., CVPR 2018: a convex
        surrogate of each present class's IoU, per image) to the cross-entropy (0 = off). It
        weighs a class by its IoU, not its pixels: thin classes (poles, signs) count as much as road.
    lovasz_stride: the Lovasz term reads every ``lovasz_stride``-th pixel in both axes, at an
        offset drawn per iteration (its sort per class costs ~1.3 s per 8 x 256 x 352 batch on
        2 CPU cores at stride 1, a quarter of that at 2); labels are never resampled.
    """

    ohem_thresh: float = 0.0
    ohem_min_kept: int = 0
    lovasz_weight: float = 0.0
    lovasz_stride: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.ohem_thresh <= 1.0:
            raise ValueError(f"loss.ohem_thresh must be in [0, 1], got {self.ohem_thresh}")
        if self.ohem_min_kept < 0:
            raise ValueError(f"loss.ohem_min_kept must be >= 0, got {self.ohem_min_kept}")
        if self.lovasz_weight < 0:
            raise ValueError(f"loss.lovasz_weight must be >= 0, got {self.lovasz_weight}")
        if self.lovasz_stride < 1:
            raise ValueError(f"loss.lovasz_stride must be >= 1, got {self.lovasz_stride}")


@dataclass
class OptimConfig:
    """Optimiser and schedule.

    optimizer: ``sgd`` (the paper: momentum 0.9) or ``adamw``.
    lr: base learning rate of the decoder / head ("scratch"); the paper's base lr 0.004 is the
        backbone's, with the decoder at 10x.
    backbone_lr_mult: backbone lr = lr * backbone_lr_mult (the paper: 0.1).
    schedule: ``poly`` (lr * (1 - it/iterations) ** power, the paper, power 0.9), ``cosine``
        or ``constant``; after ``warmup_iters`` of linear warm-up.
    """

    optimizer: str = "sgd"
    lr: float = 0.04
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "poly"
    power: float = 0.9
    warmup_iters: int = 0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    # Validate and save an exponential moving average of the weights (timm's ModelEmaV3): w_ema <-
    # d * w_ema + (1 - d) * w after every step, the first step copying w; 0 = off. Averages out
    # the step-to-step swings of thin classes (the default model's pole IoU moved 12-20 between
    # validations 200 steps apart). The average spans ~1 / (1 - d) steps.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optim.optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("poly", "cosine", "constant"):
            raise ValueError(f"optim.schedule must be poly, cosine or constant, got {self.schedule!r}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class TrainConfig:
    """A training run. Paths are relative to the config file's folder unless absolute."""

    model: Any = "lseg_effnet_lite0_minilm"  # registry name or a full LSegConfig dict
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_backbone: str | None = None  # "imagenet": the mapped EfficientNet-Lite0 weights
    init_checkpoint: str | None = None  # start from an LSeg checkpoint or embedded model name (fine-tuning)
    datasets: list[DatasetConfig] = field(default_factory=list)
    val: DatasetConfig | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    batch_size: int = 8
    iterations: int = 1000
    val_every: int = 200  # iterations; 0 = only at the end
    # Validation runs the model through `lang_seg_ros.inference.Segmenter` as `lang-seg eval` does:
    # (1.0,) = single scale, the long side resized to val_working_size (eval's default); other
    # scales = the published multi-scale evaluation (eval's --scales), val_flip adding mirrored passes.
    val_scales: tuple[float, ...] = (1.0,)
    val_working_size: int = 480
    val_flip: bool = False
    # Extra wording sets scored at each validation (files, one label per line in class order);
    # logged as val_wording_miou. Model selection stays on the data set's own names.
    val_wordings: list[str] = field(default_factory=list)
    checkpoint_every: int = 100  # iterations between resumable checkpoints
    log_every: int = 10
    out_dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # torch CPU threads; 0 = leave torch's default
    channels_last: bool = True  # faster convolutions on CPU (oneDNN) and GPU
    amp: bool = False  # bf16/fp16 autocast on CUDA
    export: str | None = None  # write the best model here as well (own format)
    export_dtype: str = "float16"
    prefetch: bool = True  # prepare the next batch in a thread

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iterations < 1:
            raise ValueError("batch_size and iterations must be >= 1")
        if not self.datasets:
            raise ValueError("datasets: at least one training data set is needed")
        if not self.val_scales or any(s <= 0 for s in self.val_scales):
            raise ValueError(f"val_scales must be positive numbers, got {list(self.val_scales)}")
        if self.val_working_size < 32:
            raise ValueError(f"val_working_size must be at least 32 pixels, got {self.val_working_size}")
        if self.export_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"export_dtype must be float16, bfloat16 or float32, got {self.export_dtype!r}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown training config field(s) {[prefix + k for k in unknown]}")
    kwargs = dict(data)
    if cls is DatasetConfig and kwargs.get("wordings") is not None:
        kwargs["wordings"] = _build(WordingConfig, kwargs["wordings"], f"{prefix}wordings.")
    nested = {"augment": AugmentConfig, "optim": OptimConfig, "loss": LossConfig}
    for key, sub in nested.items():
        if key in kwargs and cls is TrainConfig:
            kwargs[key] = _build(sub, kwargs[key] or {}, f"{key}.")
    if cls is TrainConfig:
        if "datasets" in kwargs:
            kwargs["datasets"] = [_build(DatasetConfig, d, f"datasets[{i}].") for i, d in enumerate(kwargs["datasets"] or [])]
        if kwargs.get("val") is not None:
            kwargs["val"] = _build(DatasetConfig, kwargs["val"], "val.")
        if "val_scales" in kwargs:
            kwargs["val_scales"] = tuple(float(s) for s in kwargs["val_scales"])
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover
        raise ValueError(f"bad {prefix or cls.__name__} config: {exc}") from exc


def _resolve_paths(cfg: TrainConfig, base: Path) -> None:
    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((base / value).resolve())
        return value

    for ds in [*cfg.datasets, *([cfg.val] if cfg.val else [])]:
        for key in ("root", "images", "masks"):
            if key in ds.args:
                ds.args[key] = fix(ds.args[key])
        if isinstance(ds.args.get("names"), str) and Path(base / ds.args["names"]).is_file():
            ds.args["names"] = fix(ds.args["names"])
        w = ds.wordings
        if w is not None:
            if isinstance(w.wordings, str):
                w.wordings = fix(w.wordings)
            if isinstance(w.negatives, str):
                w.negatives = fix(w.negatives)
            w.heldout = [fix(h) for h in w.heldout]
    cfg.val_wordings = [fix(v) for v in cfg.val_wordings]
    cfg.out_dir = fix(cfg.out_dir)
    if cfg.export:
        cfg.export = fix(cfg.export)
    if cfg.init_checkpoint and cfg.init_checkpoint not in EMBEDDED_MODELS:  # a name stays a name
        cfg.init_checkpoint = fix(cfg.init_checkpoint)


def load_train_config(source: str | Path | dict[str, Any], base_dir: str | Path | None = None,
                      **overrides: Any) -> TrainConfig:
    """Parse a YAML file (paths relative to it) or a dict (paths relative to ``base_dir``,
    default the working directory). ``overrides`` replace top-level fields."""
    if isinstance(source, (str, Path)):
        import yaml

        path = Path(source)
        data = yaml.safe_load(path.read_text()) or {}
        base = path.resolve().parent if base_dir is None else Path(base_dir)
    else:
        data = dict(source)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    data.update(overrides)
    cfg = _build(TrainConfig, data, "")
    _resolve_paths(cfg, base)
    return cfg
