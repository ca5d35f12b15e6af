"""ONNX backends: ONNX Runtime (CPU; CUDA / TensorRT execution providers where installed),
OpenVINO (CPU / Intel GPU) and TensorRT (an engine built from the ONNX file, cached on disk).

Each runs the graph of `onnx_export.export_onnx` (`image`, `text_features` -> `logits`) and hands
the logits back as a torch tensor on the Segmenter's device. Label sets of a model without
spatial-regularisation blocks go through in one run (their embeddings concatenated: labels do
not interact before the decision); with blocks, one run per set (the blocks act across labels).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..labels import MAX_LABELS
from .onnx_export import cache_dir, read_onnx_info

_LOG = logging.getLogger(__name__)

__all__ = ["OnnxRuntimeBackend", "OpenVinoBackend", "RUNTIMES", "TensorRtBackend"]


def _require(package: str, backend: str):
    try:
        return __import__(package)
    except ImportError as exc:
        raise ImportError(f"backend {backend!r} needs the {package!r} package: pip install {package}") from exc


class _OnnxBackend:
    name = ""
    supports_features = False

    def __init__(self, path, device: torch.device, precision: str) -> None:
        self.info = read_onnx_info(path)
        if self.info.outputs != "logits":
            raise ValueError(f"{path}: exported with outputs={self.info.outputs!r}; backends need "
                             "`lang-seg export --outputs logits` (the default)")
        self.device = device
        self._input_dtype = np.float16 if self.info.precision == "fp16" else np.float32
        self._texts: tuple[tuple, list[np.ndarray]] | None = None  # (label sets, their embeddings per run)

    def _run(self, images: np.ndarray, text: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _text_groups(self, sets: tuple) -> list[np.ndarray]:
        """The label embeddings as the graph takes them, per run: computed when the label sets
        change (they are immutable `PreparedLabels`), not per frame."""
        cached = self._texts
        if cached is None or len(cached[0]) != len(sets) or any(a is not b for a, b in zip(cached[0], sets)):
            texts = [np.ascontiguousarray(p.text.detach().float().cpu().numpy(), np.float32) for p in sets]
            groups = texts if self.info.has_head_block else [np.ascontiguousarray(np.concatenate(texts))]
            cached = self._texts = (sets, groups)
        return cached[1]

    def logits(self, images: torch.Tensor, sets: Sequence) -> torch.Tensor:
        if self.info.size is not None and tuple(images.shape[-2:]) != self.info.size:
            raise ValueError(f"{self.info.path} was exported for {self.info.size[0]}x{self.info.size[1]} inputs, got "
                             f"{images.shape[-2]}x{images.shape[-1]}: set the working size to match, or export "
                             "with --dynamic")
        x = images.detach().float().cpu().numpy().astype(self._input_dtype, copy=False)
        out = [self._run(x, t) for t in self._text_groups(tuple(sets))]
        logits = torch.from_numpy(np.concatenate(out, axis=1) if len(out) > 1 else out[0]).float()
        return logits.to(self.device)


class OnnxRuntimeBackend(_OnnxBackend):
    """ONNX Runtime: CUDA (and TensorRT) execution providers when the Segmenter's device is CUDA and
    the installed build has them, else the CPU provider."""

    name = "onnxruntime"

    def __init__(self, path, device: torch.device, precision: str) -> None:
        super().__init__(path, device, precision)
        ort = _require("onnxruntime", self.name)
        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if device.type == "cuda":
            cuda = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
            if not cuda:
                raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDA provider (has {available}): "
                                   "pip install onnxruntime-gpu, or use device cpu")
            wanted = cuda + wanted
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = torch.get_num_threads()
        options.intra_op_num_threads = threads  # the same CPU budget as torch (cpu_threads)
        # Threads that spin while waiting starve everything else on a shared CPU (OMP_WAIT_POLICY=PASSIVE for torch).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.info.path), options, providers=wanted)
        self.providers = self.session.get_providers()

    def _run(self, images: np.ndarray, text: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": images, "text_features": text})[0]


class OpenVinoBackend(_OnnxBackend):
    """OpenVINO on the CPU, or on an Intel GPU with LANG_SEG_ROS_OV_DEVICE=GPU; label counts and sizes
    dynamic as exported."""

    name = "openvino"

    def __init__(self, path, device: torch.device, precision: str) -> None:
        super().__init__(path, device, precision)
        ov = _require("openvino", self.name)
        import os

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


class TensorRtBackend(_OnnxBackend):
    """TensorRT: an engine built from the ONNX file once and cached on disk, keyed by the file's
    hash, the input size and the precision. Needs the `tensorrt` package and a CUDA GPU."""

    name = "tensorrt"

    def __init__(self, path, device: torch.device, precision: str) -> None:
        super().__init__(path, device, precision)
        self.trt = _require("tensorrt", self.name)
        if device.type != "cuda":
            raise RuntimeError("backend 'tensorrt' needs a CUDA device (device: cuda or auto on a GPU machine)")
        self.precision = precision
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self._engines: dict[tuple, object] = {}

    def _engine_path(self, shape: tuple[int, ...]) -> Path:
        digest = hashlib.sha256(Path(self.info.path).read_bytes()).hexdigest()[:16]
        name = f"{Path(self.info.path).stem}-{digest}-{shape[0]}x{shape[2]}x{shape[3]}-{self.precision}.engine"
        return cache_dir() / "tensorrt" / name

    def _engine(self, shape: tuple[int, ...]):
        """The engine for one input shape; every label count from 1 to MAX_LABELS shares it."""
        if shape in self._engines:
            return self._engines[shape]
        trt = self.trt
        path = self._engine_path(shape)
        if not path.is_file():
            _LOG.info("building a TensorRT engine for %s (once): %s", shape, path)
            builder = trt.Builder(self.logger)
            network = builder.create_network(0)
            parser = trt.OnnxParser(network, self.logger)
            if not parser.parse(Path(self.info.path).read_bytes()):
                raise RuntimeError(f"TensorRT cannot parse {self.info.path}: {parser.get_error(0)}")
            config = builder.create_builder_config()
            if self.precision in ("fp16", "bf16"):
                config.set_flag(trt.BuilderFlag.FP16)
            profile = builder.create_optimization_profile()
            profile.set_shape("image", shape, shape, shape)
            dim = self.info.config.embed_dim
            profile.set_shape("text_features", (1, dim), (32, dim), (MAX_LABELS, dim))
            config.add_optimization_profile(profile)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise RuntimeError(f"TensorRT could not build an engine for {self.info.path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes(serialized))
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        self._engines[shape] = (engine, engine.create_execution_context())
        return self._engines[shape]

    def _run(self, images: np.ndarray, text: np.ndarray) -> np.ndarray:
        engine, context = self._engine(tuple(images.shape))
        x = torch.from_numpy(images).to(self.device)
        t = torch.from_numpy(text).to(self.device)
        context.set_input_shape("image", tuple(x.shape))
        context.set_input_shape("text_features", tuple(t.shape))
        out = torch.empty(tuple(context.get_tensor_shape("logits")), device=self.device, dtype=torch.float32)
        for name, tensor in (("image", x), ("text_features", t), ("logits", out)):
            context.set_tensor_address(name, tensor.data_ptr())
        if not context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        torch.cuda.current_stream(self.device).synchronize()
        return out.cpu().numpy()


RUNTIMES = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend, "tensorrt": TensorRtBackend}
