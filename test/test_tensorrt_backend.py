"""The GPU paths of the ONNX backends, on this CPU machine: TensorRT through a stand-in `tensorrt`
module (it builds "engines" that record how they were built and run the ONNX file with onnxruntime
on the CPU, through the same raw addresses TensorRT reads), and onnxruntime's CUDA provider
through a stand-in session. What they pin: strongly typed builds on TensorRT 10 and 11 (no
precision flags), label sets beyond the engine's profile in chunks, shapes checked with the
range named, a cache key with the TensorRT version and the GPU, atomic engine writes, stale
engines rebuilt, tensors kept on the device, no silent CPU fallback in onnxruntime."""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import enum
import json
import os
import sys
import types

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from lang_seg_ros.inference.backends import runtimes  # noqa: E402
from lang_seg_ros.inference.backends.onnx_export import export_onnx  # noqa: E402
from lang_seg_ros.inference.segmenter import PreparedLabels  # noqa: E402
from lang_seg_ros.model import build_model  # noqa: E402

H, W = 64, 96
MAGIC = b"STANDIN-TRT\n"
GPU = "sm90-Stand-in GPU"


# --------------------------------------------------------------------------------------------
# A stand-in for the `tensorrt` package: the Python API the backend uses, TensorRT's rules
def standin_tensorrt(version: str) -> types.ModuleType:
    """TensorRT `version` (10.x keeps the FP16 / BF16 builder flags, deprecated; 11.x has none)."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.gpu = GPU  # the GPU engines are built on; an engine from another GPU does not load
    trt.log = {"builds": 0, "builder_flags": [], "network_flags": [], "profiles": [], "runs": [], "max_labels": 0}

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, severity=2) -> None:
            self.severity = severity

    class DataType(enum.Enum):
        FLOAT, HALF, INT8, INT32, BOOL, BF16 = 0, 1, 2, 3, 4, 7

    trt.Logger, trt.DataType = Logger, DataType
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                     {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {"TF32": 7, **({"FP16": 0, "BF16": 17} if major < 11 else {})})
    onnx_types = {1: "FLOAT", 10: "HALF", 16: "BF16"}

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.model, self.types = flags, None, {}

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            self.network = network

        def parse(self, data: bytes) -> bool:
            import onnx

            proto = onnx.load_from_string(data)
            self.network.model = data
            self.network.types = {v.name: onnx_types[v.type.tensor_type.elem_type]
                                  for v in list(proto.graph.input) + list(proto.graph.output)}
            return True

        def parse_from_file(self, path: str) -> bool:
            with open(path, "rb") as f:
                return self.parse(f.read())

        def get_error(self, i):
            return "no error"

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi) -> None:
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def __init__(self) -> None:
            self.flags, self.profiles = [], []

        def set_flag(self, flag) -> None:
            self.flags.append(flag.name)

        def add_optimization_profile(self, profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags: int = 0):
            trt.log["network_flags"].append(flags)
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            flag = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            strongly_typed = major >= 11 or bool(network.flags & flag)
            if not strongly_typed and "HALF" in network.types.values() and "FP16" not in config.flags:
                return None  # weak typing: fp16 layers need the FP16 flag
            trt.log["builds"] += 1
            trt.log["builder_flags"] += config.flags
            shapes = config.profiles[0].shapes
            trt.log["profiles"].append(shapes)
            header = {"version": trt.__version__, "gpu": trt.gpu, "types": network.types, "profile": shapes}
            return MAGIC + json.dumps(header).encode() + b"\n" + network.model

    class Engine:
        def __init__(self, header: dict, model: bytes) -> None:
            self.header, self.types = header, header["types"]
            self.profile = {k: tuple(tuple(s) for s in v) for k, v in header["profile"].items()}
            self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

        def get_tensor_dtype(self, name: str):
            return DataType[self.types[name]]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes):
            # TensorRT refuses (logs and returns None) what another version or GPU serialised, or damage
            if not data.startswith(MAGIC):
                return None
            head, _, model = data[len(MAGIC):].partition(b"\n")
            try:
                header = json.loads(head)
            except ValueError:
                return None
            if header["version"] != trt.__version__ or header["gpu"] != trt.gpu:
                return None
            return Engine(header, model)

    np_types = {"FLOAT": np.float32, "HALF": np.float16}

    class Context:
        def __init__(self, engine) -> None:
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape) -> bool:
            lo, _, hi = self.engine.profile[name]
            shape = tuple(int(d) for d in shape)
            if len(shape) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
                return False  # TensorRT logs an error, keeps the previous shape
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str):
            image, text = self.shapes.get("image"), self.shapes.get("text_features")
            if name != "logits":
                return self.shapes.get(name, (-1,))
            return (image[0] if image else -1, text[0] if text else -1,
                    image[2] // 2 if image else -1, image[3] // 2 if image else -1)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def _read(self, name: str) -> np.ndarray:
            dtype = np.dtype(np_types[self.engine.types[name]])
            shape = self.shapes[name]
            count = int(np.prod(shape)) * dtype.itemsize
            memory = (ctypes.c_char * count).from_address(self.addresses[name])
            return np.frombuffer(memory, dtype).reshape(shape).copy()

        def execute_async_v3(self, stream_handle: int) -> bool:
            feeds = {"image": self._read("image"), "text_features": self._read("text_features")}
            trt.log["runs"].append(feeds["text_features"].shape[0])
            trt.log["max_labels"] = max(trt.log["max_labels"], feeds["text_features"].shape[0])
            out = np.ascontiguousarray(self.engine.session.run(None, feeds)[0], np.float32)
            if tuple(out.shape) != tuple(self.get_tensor_shape("logits")):
                return False
            ctypes.memmove(self.addresses["logits"], out.ctypes.data, out.nbytes)
            return True

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


class StandInCuda:
    """The backend's CUDA calls, on the CPU: tensors live in host memory the stand-in reads."""

    def __init__(self) -> None:
        self.guarded: list[torch.device] = []

    def device(self, device: torch.device) -> torch.device:
        assert device.type == "cuda"
        return torch.device("cpu")

    def describe(self, device) -> str:
        return GPU

    def guard(self, device):
        self.guarded.append(device)
        return contextlib.nullcontext()

    def stream(self, device):
        return types.SimpleNamespace(cuda_stream=0)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The tiny LSeg (no spatial-regularisation blocks: label sets go through together) at fp32 and fp16."""
    torch.manual_seed(0)
    model = build_model("lseg_tiny").eval()
    folder = tmp_path_factory.mktemp("trt")
    return {p: export_onnx(model, folder / f"tiny-{p}.onnx", H, W, precision=p) for p in ("fp32", "fp16")}


@pytest.fixture
def trt(monkeypatch, tmp_path):
    """Installs a TensorRT 11 stand-in (`trt(version)` swaps the version) and a CPU CUDA seam; engines
    are cached under tmp_path."""
    monkeypatch.setenv("LANG_SEG_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runtimes, "_cuda", StandInCuda(), raising=False)

    def install(version: str = "11.1.0") -> types.ModuleType:
        module = standin_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    install.default = install()
    return install


def backend(info, precision: str | None = None):
    return runtimes.TensorRtBackend(info.path, torch.device("cuda", 0), precision or info.precision)


def label_sets(*counts: int, dim: int = 32, seed: int = 0) -> list[PreparedLabels]:
    """Label sets with random unit embeddings (what the text encoder gives), without encoding them."""
    rng = torch.Generator().manual_seed(seed)
    sets = []
    for s, n in enumerate(counts):
        text = torch.nn.functional.normalize(torch.randn(n, dim, generator=rng), dim=1)
        sets.append(PreparedLabels(tuple(f"set{s} label {i}" for i in range(n)), text, None))
    return sets


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(seed))


def reference(info, x: torch.Tensor, sets) -> np.ndarray:
    """What onnxruntime gives for the file, all labels in one run (no profile there)."""
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    text = torch.cat([p.text for p in sets]).numpy()
    dtype = np.float16 if info.precision == "fp16" else np.float32
    return session.run(None, {"image": x.numpy().astype(dtype), "text_features": text})[0]


# --------------------------------------------------------------------------------------------
# 1. precision: strongly typed networks, the file's precision, no FP16 / BF16 builder flags
@pytest.mark.parametrize("version", ["10.13.3", "11.1.0"])
def test_fp16_engines_are_strongly_typed_builds_of_the_fp16_export_on_tensorrt_10_and_11(exports, trt, version):
    module = trt(version)
    info = exports["fp16"]
    engine = backend(info, "fp16")
    x, sets = images(), label_sets(3, 4)
    got = engine.logits(x, sets)
    assert got.dtype == torch.float32 and tuple(got.shape) == (1, 7, H // 2, W // 2)
    np.testing.assert_allclose(got.numpy(), reference(info, x, sets), atol=1e-3)
    strongly = 1 << int(module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert module.log["builds"] == 1 and all(f & strongly for f in module.log["network_flags"])
    assert not {"FP16", "BF16"} & set(module.log["builder_flags"])  # removed in 11, deprecated in 10.12


def test_bf16_and_a_precision_other_than_the_exports_are_refused_not_substituted(exports, trt):
    module = trt("10.13.3")  # still has BuilderFlag.FP16: a bf16 request used to build fp16
    with pytest.raises(ValueError, match="fp32 or fp16 engines, not bf16"):
        backend(exports["fp32"], "bf16").logits(images(), label_sets(2))
    with pytest.raises(ValueError, match=r"fp32 export .*lang-seg export --precision fp16"):
        backend(exports["fp32"], "fp16").logits(images(), label_sets(2))
    with pytest.raises(ValueError, match="fp16 export"):
        backend(exports["fp16"], "fp32").logits(images(), label_sets(2))
    assert module.log["builds"] == 0


def test_tensorrt_versions_other_than_10_and_11_are_refused_with_what_to_install(exports, trt):
    trt("8.6.1")
    with pytest.raises(RuntimeError, match=r"supports TensorRT 10\.x and 11\.x"):
        backend(exports["fp32"])


# --------------------------------------------------------------------------------------------
# 2. label sets beyond the optimisation profile (the active set + a referring query's, refer_many)
def test_label_sets_beyond_the_engines_profile_run_in_chunks_with_the_same_logits(exports, trt):
    info = exports["fp32"]
    engine = backend(info)
    x, sets = images(), label_sets(1000, 700, 300)  # 2000 labels together, each set within MAX_LABELS
    got = engine.logits(x, sets)
    assert tuple(got.shape) == (1, 2000, H // 2, W // 2)
    np.testing.assert_allclose(got.numpy(), reference(info, x, sets), atol=1e-4)
    assert trt.default.log["max_labels"] <= runtimes.MAX_LABELS and trt.default.log["runs"] == [1024, 976]
    assert trt.default.log["profiles"][0]["text_features"][2] == (runtimes.MAX_LABELS, 32)
    # a model whose spatial-regularisation blocks act across a set's labels cannot split a set: said so
    engine.info = dataclasses.replace(engine.info, has_head_block=True)
    with pytest.raises(ValueError, match="cannot be split"):
        engine.logits(x, label_sets(runtimes.MAX_LABELS + 1))


# --------------------------------------------------------------------------------------------
# 3. shapes checked, with the range named
def test_inputs_outside_the_engines_profile_fail_naming_the_range(exports, trt):
    engine = backend(exports["fp32"])
    engine.logits(images(), label_sets(5))
    with pytest.raises(ValueError, match=r"text_features of 1 to 1024 labels x 32; got text_features \(4, 33\)"):
        engine.logits(images(), label_sets(4, dim=33))


def test_an_unresolved_output_shape_is_an_error_not_a_crash_in_torch(exports, trt, monkeypatch):
    engine = backend(exports["fp32"])
    engine.logits(images(), label_sets(5))
    context = next(iter(engine._engines.values())).context
    monkeypatch.setattr(context, "get_tensor_shape", lambda name: (-1, -1, 32, 48))
    with pytest.raises(RuntimeError, match=r"logits of shape \(-1, -1, 32, 48\)"):
        engine.logits(images(), label_sets(6))


# --------------------------------------------------------------------------------------------
# 4. the engine cache: versions and GPU in the key, atomic writes, stale engines rebuilt
def test_the_engine_cache_key_names_the_tensorrt_version_and_the_gpu(exports, trt):
    info = exports["fp32"]
    first = backend(info)
    first.logits(images(), label_sets(3))
    path = first._engine_path((1, 3, H, W))
    assert path.is_file() and "trt11.1.0" in path.name and "sm90" in path.name and "fp32" in path.name
    upgraded = trt("11.2.0")  # after an upgrade: its own engine, built once, the old one left alone
    second = backend(info)
    got = second.logits(images(), label_sets(3))
    assert second._engine_path((1, 3, H, W)) != path and path.is_file() and upgraded.log["builds"] == 1
    np.testing.assert_allclose(got.numpy(), reference(info, images(), label_sets(3)), atol=1e-4)
    backend(info).logits(images(), label_sets(3))  # a later process loads it: no build
    assert upgraded.log["builds"] == 1


@pytest.mark.parametrize("damage", ["truncated", "foreign GPU"])
def test_a_stale_or_damaged_cached_engine_is_rebuilt_not_a_failure_every_time(exports, trt, damage):
    info = exports["fp32"]
    path = backend(info)._engine_path((1, 3, H, W))
    path.parent.mkdir(parents=True)
    if damage == "truncated":
        path.write_bytes(MAGIC + b'{"version": "11.1')  # cut short mid-write
    else:
        path.write_bytes(MAGIC + json.dumps({"version": "11.1.0", "gpu": "sm80-Other", "types": {}, "profile": {}}
                                            ).encode() + b"\n")
    x, sets = images(), label_sets(4)
    np.testing.assert_allclose(backend(info).logits(x, sets).numpy(), reference(info, x, sets), atol=1e-4)
    assert trt.default.log["builds"] == 1 and path.read_bytes().startswith(MAGIC)
    assert trt.default.Runtime(None).deserialize_cuda_engine(path.read_bytes()) is not None


def test_engines_are_written_atomically(exports, trt, monkeypatch):
    info = exports["fp32"]
    engine = backend(info)
    path = engine._engine_path((1, 3, H, W))

    def crash(src, dst):
        raise OSError("disk full")  # the process dies between writing and publishing the engine

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        engine.logits(images(), label_sets(2))
    assert not path.exists() and not list(path.parent.iterdir())  # nothing half-written left behind


# --------------------------------------------------------------------------------------------
# smaller: tensors stay on the device; the GPU is cuda:N, not whichever is current
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_images_and_logits_stay_on_the_device(exports, trt, monkeypatch, precision):
    engine = backend(exports[precision])
    sets = label_sets(3)
    engine.logits(images(), sets)  # builds the engine, converts the label set once

    def host_copy(self, *args, **kwargs):
        raise AssertionError("a tensor went through host memory (numpy)")

    monkeypatch.setattr(torch.Tensor, "numpy", host_copy)
    out = engine.logits(images(1), sets)
    assert out.device == engine.device and out.dtype == torch.float32
    assert runtimes._cuda.guarded  # built and run under the backend's device


def test_the_tensorrt_backend_runs_on_the_gpu_it_is_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert runtimes._Cuda.device(torch.device("cuda")) == torch.device("cuda", 3)
    assert runtimes._Cuda.device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        runtimes._Cuda.device(torch.device("cpu"))


# --------------------------------------------------------------------------------------------
# 5. onnxruntime's CUDA provider: verified, on the GPU asked for; its TensorRT provider not used
@pytest.mark.parametrize("starts", [False, True])
def test_onnxruntime_on_cuda_refuses_a_silent_cpu_fallback(exports, monkeypatch, starts):
    asked, real = [], ort.InferenceSession

    class Session:
        """A session whose CUDA provider did (not) start: onnxruntime only warns and uses the CPU."""

        def __init__(self, path, options=None, providers=None) -> None:
            asked.append(providers)
            self._session = real(path, options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return (["CUDAExecutionProvider"] if starts else []) + ["CPUExecutionProvider"]

        def run(self, *args):
            return self._session.run(*args)

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", Session)
    device = torch.device("cuda", 1)
    if starts:
        got = runtimes.OnnxRuntimeBackend(exports["fp32"].path, device, "fp32")
        assert got.providers[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(RuntimeError, match="could not start its CUDA provider"):
            runtimes.OnnxRuntimeBackend(exports["fp32"].path, device, "fp32")
    providers = asked[0]
    assert not any("Tensorrt" in (p if isinstance(p, str) else p[0]) for p in providers)
    assert providers[0] == ("CUDAExecutionProvider", {"device_id": 1})


# --------------------------------------------------------------------------------------------
# the export side, for real: a strongly typed fp16 graph
def test_the_fp16_export_is_a_strongly_typed_fp16_graph(exports):
    """TensorRT 11 takes every type from the file: the fp16 export must be type-consistent (strict
    ONNX type inference), take fp16 images, keep the label embeddings and logits fp32, and run its
    convolutions and the image branch's matrix products in fp16; and it must agree with fp32."""
    import onnx

    info = exports["fp16"]
    proto = onnx.load(str(info.path))
    onnx.checker.check_model(proto, full_check=True)
    graph = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True).graph
    kinds = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    kinds.update({i.name: i.data_type for i in graph.initializer})
    fp32, fp16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [(i.name, kinds[i.name]) for i in graph.input] == [("image", fp16), ("text_features", fp32)]
    assert [(o.name, kinds[o.name]) for o in graph.output] == [("logits", fp32)]
    nodes = list(graph.node)  # ONNX keeps them in topological order
    convolutions = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "ConvTranspose")]
    products = [i for i, n in enumerate(nodes) if n.op_type in ("MatMul", "Gemm", "Einsum")]
    assert convolutions and all(kinds[nodes[i].input[0]] == fp16 for i in convolutions)
    # the image branch (encoder and decoder, up to the last convolution) computes in fp16; the label
    # stage after it in fp32, as torch does (pixel embeddings x fp32 label embeddings, head folded in)
    assert len(products) > 20 and all(kinds[nodes[i].input[0]] == fp16 for i in products if i < convolutions[-1])
    assert sum(i.data_type == fp16 for i in graph.initializer) > 0.9 * len(graph.initializer)
    x, sets = images(), label_sets(5)
    half = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    full = ort.InferenceSession(str(exports["fp32"].path), providers=["CPUExecutionProvider"])
    text = torch.cat([p.text for p in sets]).numpy()
    a = half.run(None, {"image": x.numpy().astype(np.float16), "text_features": text})[0]
    b = full.run(None, {"image": x.numpy(), "text_features": text})[0]
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.98
