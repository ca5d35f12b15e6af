"""Options shared by every `lang-seg` command that runs the model (`segment`, `refer`,
`eval-refer`, `eval`, ...) and the `Segmenter` they describe. Its own module so that the main CLI
and the training commands both use it without importing each other; it imports nothing heavy,
so building the parser stays fast."""
from __future__ import annotations

import argparse
from typing import Sequence

__all__ = ["add_block_arguments", "add_model_arguments", "block_overrides", "parse_scales", "segmenter_from_args"]


def parse_scales(values: Sequence[str] | None) -> tuple[tuple[float, ...] | None, bool]:
    """`--scales published` -> the paper's scales with flips; numbers -> those scales (ValueError otherwise)."""
    from .inference import PUBLISHED_SCALES

    if not values:
        return None, False
    if list(values) == ["published"]:
        return PUBLISHED_SCALES, True
    try:
        scales = tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(f"--scales takes numbers or the word 'published', got {' '.join(values)}") from None
    if any(not 0 < s < float("inf") for s in scales):
        raise ValueError(f"--scales must be positive, got {' '.join(values)}")
    return scales, False


CHECKPOINT_HELP = ("official .ckpt, our .safetensors, or an embedded model: default (the default) or "
                   "default-large (slower, more accurate)")


def checkpoint_argument(value: str) -> str:
    """--checkpoint: an embedded model's name becomes its file's path (so every command, and the
    vocabulary read from the file, sees a path); anything else is a path, checked where it is loaded."""
    from .weights import EMBEDDED_MODELS, embedded_model_file

    # a missing embedded file is reported where it is loaded, as a missing path is
    return str(embedded_model_file(value)) if value in EMBEDDED_MODELS else value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs the model."""
    parser.add_argument("--checkpoint", type=checkpoint_argument, help=CHECKPOINT_HELP)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="image-branch precision; auto: what the device runs natively (fp16 on a GPU, bf16 on a "
                             "CPU with AVX-512 BF16 / AMX, else fp32)")
    parser.add_argument("--working-size", type=int, default=480, help="long side for single-scale inference")
    parser.add_argument("--scales", nargs="+", metavar="S",
                        help="multi-scale evaluation: scales, or 'published' for the paper's scales + flip")
    parser.add_argument("--flip", action="store_true", help="add horizontally flipped passes (with --scales)")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "openvino", "tensorrt"],
                        help="image-branch backend; the others run an ONNX file from `lang-seg export` (or the "
                             "checkpoint exported once, cached)")
    add_block_arguments(parser)


def add_block_arguments(parser: argparse.ArgumentParser) -> None:
    """Spatial-regularisation settings, which official checkpoints do not record."""
    parser.add_argument("--block-type", choices=["bottleneck", "depthwise"],
                        help="spatial regularisation block of an official checkpoint that has one")
    parser.add_argument("--block-depth", type=int)
    parser.add_argument("--block-activation", choices=["relu", "lrelu", "tanh"])


def block_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {k: getattr(args, k) for k in ("block_type", "block_depth", "block_activation") if getattr(args, k) is not None}


def segmenter_from_args(args: argparse.Namespace, threshold: float = 0.0, trace: bool = True):
    """The `Segmenter` the model options describe (torch and the model load here, not at parse time);
    trace=False for a command that runs one image (the torch backend's trace would cost more than
    it saves)."""
    from .inference import Segmenter

    scales, flip = parse_scales(args.scales)
    precision = args.precision
    if getattr(args, "lts", None) and precision == "auto":  # the trained LTS head runs fp32 on the model's features
        precision = "fp32"
    return Segmenter(args.checkpoint, device=args.device, precision=precision, working_size=args.working_size,
                     scales=scales, flip=flip or args.flip, threshold=threshold, backend=args.backend,
                     trace=trace, **block_overrides(args))
