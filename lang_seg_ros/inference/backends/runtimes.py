"""ONNX backends: ONNX Runtime (CPU; CUDA execution provider where installed), OpenVINO (CPU /
Intel GPU) and TensorRT (an engine built from the ONNX file, cached on disk).

Each runs the graph of `onnx_export.export_onnx` (`image`, `text_features` -> `logits`) and hands
the logits back as a torch tensor on the Segmenter's device. Label sets of a model without
spatial-regularisation blocks go through in one run (their embeddings concatenated: labels do
not interact before the decision), in chunks where a backend takes fewer labels per run than the
sets hold together (TensorRT: its optimisation profile's `MAX_LABELS`); with blocks, one run per
set (the blocks act across labels).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..labels import MAX_LABELS
from .onnx_export import cache_dir, read_onnx_info

_LOG = logging.getLogger(__name__)

__all__ = ["OnnxRuntimeBackend", "OpenVinoBackend", "RUNTIMES", "TENSORRT_MAJORS", "TensorRtBackend"]

#: TensorRT major versions the TensorRT backend is written for: strongly typed networks (the
#: precision is the ONNX file's: TensorRT 11 removed the FP16 / BF16 builder flags, 10.12
#: deprecated them) and the named-tensor runtime API (`set_input_shape`, `execute_async_v3`).
TENSORRT_MAJORS = (10, 11)


def _require(package: str, backend: str):
    try:
        return __import__(package)
    except ImportError as exc:
        raise ImportError(f"backend {backend!r} needs the {package!r} package: pip install {package}") from exc


class _OnnxBackend:
    name = ""
    supports_features = False
    #: the most labels one run takes (None: any number); more go through in chunks of this size
    max_labels_per_run: int | None = None

    def __init__(self, path, device: torch.device, precision: str) -> None:
        self.info = read_onnx_info(path)
        if self.info.outputs != "logits":
            raise ValueError(f"{path}: exported with outputs={self.info.outputs!r}; backends need "
                             "`lang-seg export --outputs logits` (the default)")
        self.device = device
        self._input_dtype = np.float16 if self.info.precision == "fp16" else np.float32
        self._texts: tuple[tuple, list[Any]] | None = None  # (label sets, their embeddings per run)

    def _run(self, images: np.ndarray, text: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _text_input(self, text: torch.Tensor) -> Any:
        """(n, C) fp32 label embeddings as `_run` takes them (numpy on the host here)."""
        return np.ascontiguousarray(text.detach().float().cpu().numpy(), np.float32)

    def _text_groups(self, sets: tuple) -> list[Any]:
        """The label embeddings as the graph takes them, per run: computed when the label sets
        change (they are immutable `PreparedLabels`), not per frame. Without head blocks the sets
        are concatenated and cut into runs of at most `max_labels_per_run` labels."""
        cached = self._texts
        if cached is None or len(cached[0]) != len(sets) or any(a is not b for a, b in zip(cached[0], sets)):
            texts = [p.text.detach().float() for p in sets]
            cap = self.max_labels_per_run
            if self.info.has_head_block:
                for p in sets:
                    if cap is not None and len(p) > cap:
                        raise ValueError(f"backend {self.name!r} takes at most {cap} labels per run and this model's "
                                         f"spatial-regularisation blocks act across a set's labels, so a set of "
                                         f"{len(p)} cannot be split: use at most {cap} labels")
                groups = texts
            else:
                joined = torch.cat(texts) if len(texts) > 1 else texts[0]
                groups = list(joined.split(cap)) if cap is not None else [joined]
            cached = self._texts = (sets, [self._text_input(g) for g in groups])
        return cached[1]

    def _check_size(self, images: torch.Tensor) -> None:
        if self.info.size is not None and tuple(images.shape[-2:]) != self.info.size:
            raise ValueError(f"{self.info.path} was exported for {self.info.size[0]}x{self.info.size[1]} inputs, got "
                             f"{images.shape[-2]}x{images.shape[-1]}: set the working size to match, or export "
                             "with --dynamic")

    def logits(self, images: torch.Tensor, sets: Sequence) -> torch.Tensor:
        self._check_size(images)
        groups = self._text_groups(tuple(sets))
        x = images.detach().float().cpu().numpy().astype(self._input_dtype, copy=False)
        out = [self._run(x, t) for t in groups]
        logits = torch.from_numpy(np.concatenate(out, axis=1) if len(out) > 1 else out[0]).float()
        return logits.to(self.device)


class OnnxRuntimeBackend(_OnnxBackend):
    """ONNX Runtime: the CUDA execution provider on the Segmenter's GPU when its device is CUDA (an
    error when that provider cannot start: no silent CPU fallback), else the CPU provider.

    ONNX Runtime's TensorRT execution provider is not used: unconfigured it keeps no engine cache
    and rebuilds its engine whenever the label count grows; the `tensorrt` backend builds and
    caches its engines itself."""

    name = "onnxruntime"

    def __init__(self, path, device: torch.device, precision: str) -> None:
        super().__init__(path, device, precision)
        ort = _require("onnxruntime", self.name)
        available = ort.get_available_providers()
        wanted: list = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDA provider (has {available}): "
                                   "pip install onnxruntime-gpu, or use device cpu")
            index = device.index if device.index is not None else (
                torch.cuda.current_device() if torch.cuda.is_available() else 0)
            wanted = [("CUDAExecutionProvider", {"device_id": index})] + wanted
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = torch.get_num_threads()
        options.intra_op_num_threads = threads  # the same CPU budget as torch (cpu_threads)
        # Threads that spin while waiting starve everything else on a shared CPU (OMP_WAIT_POLICY=PASSIVE for torch).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.info.path), options, providers=wanted)
        self.providers = self.session.get_providers()
        if device.type == "cuda" and "CUDAExecutionProvider" not in self.providers:
            # onnxruntime only warns when a provider fails to load, and runs on the CPU
            raise RuntimeError(f"onnxruntime {ort.__version__} could not start its CUDA provider and fell back to "
                               f"{self.providers}: the CUDA / cuDNN libraries this onnxruntime-gpu build needs are "
                               "missing or of another version (see onnxruntime's warning above); fix them, or use "
                               "backend tensorrt or torch, or device cpu")

    def _run(self, images: np.ndarray, text: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": images, "text_features": text})[0]


class OpenVinoBackend(_OnnxBackend):
    """OpenVINO on the CPU, or on an Intel GPU with LANG_SEG_ROS_OV_DEVICE=GPU; label counts and sizes
    dynamic as exported."""

    name = "openvino"

    def __init__(self, path, device: torch.device, precision: str) -> None:
        super().__init__(path, device, precision)
        ov = _require("openvino", self.name)

        target = os.environ.get("LANG_SEG_ROS_OV_DEVICE", "CPU")
        core = ov.Core()
        # The precision asked for, not OpenVINO's default (bf16 on CPUs that have it, f16 on GPUs).
        config = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[precision]}
        if target == "CPU":
            config["INFERENCE_NUM_THREADS"] = torch.get_num_threads()
        self.compiled = core.compile_model(core.read_model(str(self.info.path)), target, config)
        self.request = self.compiled.create_infer_request()

    def _run(self, images: np.ndarray, text: np.ndarray) -> np.ndarray:
        result = self.request.infer({"image": images, "text_features": text})
        return np.asarray(result[self.compiled.output(0)])


class _Cuda:
    """The CUDA calls of the TensorRT backend, in one place: tests replace this object to run the
    backend's own logic on the CPU with a stand-in `tensorrt` module."""

    @staticmethod
    def device(device: torch.device) -> torch.device:
        """`device` with its index: TensorRT runs on that GPU, not on whichever is current."""
        if device.type != "cuda":
            raise RuntimeError("backend 'tensorrt' needs a CUDA device (device: cuda or auto on a GPU machine)")
        return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)

    @staticmethod
    def describe(device: torch.device) -> str:
        """The GPU as an engine depends on it: compute capability and model name."""
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm{major}{minor}-{torch.cuda.get_device_name(device)}"

    @staticmethod
    def guard(device: torch.device):
        return torch.cuda.device(device)

    @staticmethod
    def stream(device: torch.device):
        return torch.cuda.current_stream(device)


_cuda = _Cuda()


@dataclass
class _Engine:
    engine: Any
    context: Any
    path: Path
    image_shape: tuple[int, ...]
    labels: tuple[int, int]  # the optimisation profile's label range (min, max)
    dim: int  # label embedding size
    image_dtype: torch.dtype
    text_dtype: torch.dtype
    out_dtype: torch.dtype


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def _write_atomically(path: Path, data) -> None:
    """Write `data` (bytes or a buffer) to `path` so that no reader ever sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TensorRtBackend(_OnnxBackend):
    """TensorRT 10.x / 11.x: an engine built once per input shape from the ONNX file as a strongly
    typed network (the precision is the file's: `lang-seg export --precision fp16` for fp16) and
    cached on disk, keyed by the file's hash, the input shape, the precision, the label range, the
    TensorRT version and the GPU (compute capability and name). Images, label embeddings and logits
    stay on the GPU. Needs the `tensorrt` package and a CUDA GPU."""

    name = "tensorrt"
    max_labels_per_run = MAX_LABELS
    #: the label count TensorRT tunes its kernels for (the profile's `opt`)
    opt_labels = 32

    def __init__(self, path, device: torch.device, precision: str) -> None:
        super().__init__(path, device, precision)
        self.trt = trt = _require("tensorrt", self.name)
        self.version = str(getattr(trt, "__version__", "unknown"))
        try:
            major = int(self.version.split(".")[0])
        except ValueError:
            major = -1
        if major not in TENSORRT_MAJORS:
            raise RuntimeError(f"tensorrt {self.version}: backend 'tensorrt' supports TensorRT "
                               f"{' and '.join(f'{m}.x' for m in TENSORRT_MAJORS)} (pip install 'tensorrt>=10,<12', "
                               "or JetPack 6.1+ on a Jetson)")
        self.device = _cuda.device(device)
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"backend 'tensorrt' builds fp32 or fp16 engines, not {precision}: use precision fp16 "
                             "(as fast as bf16 on tensor cores) or fp32")
        if precision != self.info.precision:
            raise ValueError(f"{self.info.path} is an {self.info.precision} export and TensorRT builds strongly typed "
                             f"networks (the file's types are the engine's): for {precision}, export with "
                             f"`lang-seg export --precision {precision}` (or give the checkpoint: it is exported "
                             f"at the precision asked for), or run with precision {self.info.precision}")
        self.precision = precision
        self.logger = trt.Logger(trt.Logger.WARNING)
        with _cuda.guard(self.device):
            self.runtime = trt.Runtime(self.logger)
        self._engines: dict[tuple, _Engine] = {}
        self._digest: str | None = None

    # -- the engine cache --------------------------------------------------------------------
    def _file_digest(self) -> str:
        if self._digest is None:
            digest = hashlib.sha256()
            with open(self.info.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._digest = digest.hexdigest()[:16]
        return self._digest

    def _engine_path(self, shape: tuple[int, ...]) -> Path:
        """One file per ONNX file (hash), input shape, precision, label range, TensorRT version and GPU:
        an engine only loads on the TensorRT version and GPU model that built it."""
        parts = [Path(self.info.path).stem, self._file_digest(), "x".join(str(d) for d in shape), self.precision,
                 f"n{self.max_labels_per_run}", f"trt{self.version}", _cuda.describe(self.device)]
        return cache_dir() / "tensorrt" / (_slug("-".join(parts)) + ".engine")

    def _deserialize(self, path: Path):
        """The engine in `path`, or None (and the file removed) when TensorRT cannot load it: built by
        another TensorRT or GPU, or damaged."""
        try:
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - some versions raise instead of returning None
            _LOG.debug("deserialising %s: %s", path, exc)
            engine = None
        if engine is None:
            _LOG.warning("TensorRT %s cannot load the cached engine %s (another TensorRT version or GPU built it, "
                         "or it is damaged): building it again", self.version, path)
            path.unlink(missing_ok=True)
        return engine

    def _build(self, shape: tuple[int, ...], path: Path) -> None:
        trt = self.trt
        _LOG.info("building a TensorRT %s engine for %s (once): %s", self.version, shape, path)
        builder = trt.Builder(self.logger)
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        # 10.x: strongly typed on request; 11.x: always (the flag, where still present, is ignored)
        network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(self.info.path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT {self.version} cannot parse {self.info.path}: {errors}")
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        profile.set_shape("image", shape, shape, shape)
        dim = self.info.config.embed_dim
        cap = self.max_labels_per_run
        profile.set_shape("text_features", (1, dim), (min(self.opt_labels, cap), dim), (cap, dim))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT {self.version} could not build an engine for {self.info.path} at {shape} "
                               "(see TensorRT's errors above)")
        _write_atomically(path, serialized)

    def _dtype(self, engine, name: str) -> torch.dtype:
        trt = self.trt
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        if hasattr(trt.DataType, "BF16"):
            table[trt.DataType.BF16] = torch.bfloat16
        dtype = engine.get_tensor_dtype(name)
        if dtype not in table:
            raise RuntimeError(f"TensorRT engine tensor {name!r} is of type {dtype}; expected float, half or bf16")
        return table[dtype]

    def _engine(self, shape: tuple[int, ...]) -> _Engine:
        """The engine for one input shape; every label count from 1 to `max_labels_per_run` shares it."""
        if shape in self._engines:
            return self._engines[shape]
        path = self._engine_path(shape)
        with _cuda.guard(self.device):
            engine = self._deserialize(path) if path.is_file() else None
            if engine is None:
                self._build(shape, path)
                engine = self._deserialize(path)
                if engine is None:
                    raise RuntimeError(f"TensorRT {self.version} cannot load the engine it has just built: {path}")
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
        entry = _Engine(engine, context, path, tuple(shape), (1, self.max_labels_per_run), self.info.config.embed_dim,
                        self._dtype(engine, "image"), self._dtype(engine, "text_features"),
                        self._dtype(engine, "logits"))
        self._engines[shape] = entry
        return entry

    # -- running it ----------------------------------------------------------------------------
    def _text_input(self, text: torch.Tensor) -> torch.Tensor:
        return text.detach().to(self.device, torch.float32).contiguous()

    def _execute(self, entry: _Engine, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        context = entry.context
        text = text.to(entry.text_dtype).contiguous()
        for name, tensor in (("image", x), ("text_features", text)):
            if not context.set_input_shape(name, tuple(tensor.shape)):
                raise ValueError(
                    f"TensorRT engine {entry.path.name} takes image {entry.image_shape} and text_features of "
                    f"{entry.labels[0]} to {entry.labels[1]} labels x {entry.dim}; got {name} {tuple(tensor.shape)}")
        shape = tuple(int(d) for d in context.get_tensor_shape("logits"))
        if len(shape) != 4 or any(d < 0 for d in shape) or shape[:2] != (x.shape[0], text.shape[0]):
            raise RuntimeError(f"TensorRT engine {entry.path.name}: logits of shape {shape} for image "
                               f"{tuple(x.shape)} and {text.shape[0]} labels (expected ({x.shape[0]}, "
                               f"{text.shape[0]}, H/2, W/2))")
        out = torch.empty(shape, device=self.device, dtype=entry.out_dtype)
        for name, tensor in (("image", x), ("text_features", text), ("logits", out)):
            if context.set_tensor_address(name, tensor.data_ptr()) is False:
                raise RuntimeError(f"TensorRT refused the address of {name!r}")
        # on the torch stream: what follows (the label decision) is ordered after it, no host sync
        if not context.execute_async_v3(_cuda.stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed (see TensorRT's errors above)")
        return out

    def logits(self, images: torch.Tensor, sets: Sequence) -> torch.Tensor:
        self._check_size(images)
        groups = self._text_groups(tuple(sets))
        with _cuda.guard(self.device):
            entry = self._engine(tuple(images.shape))
            x = images.detach().to(self.device, entry.image_dtype).contiguous()
            out = [self._execute(entry, x, t) for t in groups]
            return (torch.cat(out, dim=1) if len(out) > 1 else out[0]).float()


RUNTIMES = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend, "tensorrt": TensorRtBackend}
