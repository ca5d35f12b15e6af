"""ONNX export and the backends under the Segmenter: same label maps as eager torch, any label set
at run time (never fixed at export), clear errors for what cannot run here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from lang_seg_ros.inference import Segmenter  # noqa: E402
from lang_seg_ros.inference.backends.onnx_export import export_onnx, read_onnx_info  # noqa: E402
from lang_seg_ros.model import build_model, save_checkpoint  # noqa: E402

H, W = 64, 96  # the tiny model's export size (a ViT: fixed size)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny test LSeg (ViT image branch, CLIP text tower), as a checkpoint and as an ONNX export."""
    torch.manual_seed(0)
    model = build_model("lseg_tiny").eval()
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = save_checkpoint(model, folder / "tiny.safetensors")
    info = export_onnx(model, folder / "tiny.onnx", H, W)
    return model, checkpoint, info


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(2)]


def test_export_keeps_the_config_and_writes_the_text_tower_beside_it(tiny):
    model, _, info = tiny
    again = read_onnx_info(info.path)
    assert again.config == model.config and again.size == (H, W) and again.outputs == "logits"
    # CLIP's text tower comes from no package: its weights travel in <stem>.text.safetensors
    assert info.text_weights.name == "tiny.text.safetensors" and info.text_weights.is_file()
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "text_features"]
    assert session.get_inputs()[1].shape[0] == "labels"  # the label count is a run-time dimension


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backends_segment_like_torch_with_label_sets_chosen_at_run_time(tiny, frames, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    model, checkpoint, info = tiny
    eager = Segmenter(checkpoint, device="cpu", working_size=W)
    onnx = Segmenter(info.path, device="cpu", working_size=W, backend=backend)
    assert not onnx.supports_features
    for labels in (["sky", "road", "car"], ["a red mug", "table", "floor", "wall", "person", "dog", "other"]):
        for frame in frames:
            want = eager.segment(frame, labels=labels)
            got = onnx.segment(frame, labels=labels)
            assert got.labels == want.labels
            np.testing.assert_array_equal(got.label_map, want.label_map)
            np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
    # the frame's labels plus a referring query's, in one pass
    sets = onnx.segment_sets(frames[0], [["sky", "road"], ["car", "other"]])
    assert [r.labels for r in sets] == [("sky", "road"), ("car", "other")]


def test_a_fixed_size_export_refuses_other_sizes_with_the_reason(tiny, frames):
    _, _, info = tiny
    onnx = Segmenter(info.path, device="cpu", working_size=W * 2, backend="onnxruntime")
    with pytest.raises(ValueError, match="exported for 64x96"):
        onnx.segment(np.zeros((H * 2, W * 2, 3), np.uint8), labels=["a", "b"])


def test_dynamic_export_runs_at_any_size_and_checks_itself_against_torch(tiny, frames, tmp_path):
    model, checkpoint, _ = tiny
    info = export_onnx(model, tmp_path / "dyn.onnx", H, W, dynamic=True)  # checked at two sizes
    assert info.size is None
    eager = Segmenter(checkpoint, device="cpu", working_size=2 * W)
    onnx = Segmenter(info.path, device="cpu", working_size=2 * W, backend="onnxruntime")
    big = np.kron(frames[0], np.ones((2, 2, 1), np.uint8))
    np.testing.assert_array_equal(onnx.segment(big, labels=["a", "b", "c"]).label_map,
                                  eager.segment(big, labels=["a", "b", "c"]).label_map)
    # the self-check fails loudly when the graph and the model disagree
    from lang_seg_ros.inference.backends.onnx_export import _check

    torch.manual_seed(1)
    other = build_model("lseg_tiny").eval()
    with pytest.raises(ValueError, match="differs from the model"):
        _check(info, other, [(H, W)])


def test_a_checkpoint_on_an_onnx_backend_is_exported_once_and_cached(tiny, frames, tmp_path, monkeypatch):
    _, checkpoint, _ = tiny
    monkeypatch.setenv("LANG_SEG_ROS_CACHE", str(tmp_path))
    first = Segmenter(checkpoint, device="cpu", working_size=W, backend="onnxruntime")
    exported = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 1 and exported[0].with_name(exported[0].stem + ".text.safetensors").is_file()
    stamp = exported[0].stat().st_mtime_ns
    Segmenter(checkpoint, device="cpu", working_size=W, backend="onnxruntime")
    assert exported[0].stat().st_mtime_ns == stamp  # not exported again
    eager = Segmenter(checkpoint, device="cpu", working_size=W)
    np.testing.assert_array_equal(first.segment(frames[0], labels=["x", "y", "z"]).label_map,
                                  eager.segment(frames[0], labels=["x", "y", "z"]).label_map)


def test_backends_that_cannot_run_here_say_what_to_install(tiny):
    _, _, info = tiny
    with pytest.raises(ValueError, match="backend must be one of"):
        Segmenter(info.path, device="cpu", backend="tflite")
    with pytest.raises(ValueError, match="not torch"):
        Segmenter(info.path, device="cpu")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorrt"):
            Segmenter(info.path, device="cpu", backend="tensorrt")


def test_a_batch_of_frames_in_one_pass_equals_one_by_one(tiny, frames):
    _, checkpoint, info = tiny
    for segmenter in (Segmenter(checkpoint, device="cpu", working_size=W),
                      Segmenter(info.path, device="cpu", working_size=W, backend="onnxruntime")):
        segmenter.set_labels(["sky", "road", "car"])
        batch = segmenter.segment_batch(frames)
        for frame, got in zip(frames, batch):
            np.testing.assert_array_equal(got.label_map, segmenter.segment(frame).label_map)
        took = segmenter.warmup([(H, W)], batch=2)
        assert set(took) == {(H, W)} and took[(H, W)] > 0
    with pytest.raises(ValueError, match="one size"):
        segmenter.segment_batch([frames[0], frames[0][:32]])


def test_lang_seg_export_and_backend_on_the_command_line(tiny, frames, tmp_path, capsys):
    import cv2

    from lang_seg_ros.cli import main

    _, checkpoint, _ = tiny
    out = tmp_path / "m.onnx"
    assert main(["export", str(out), "--checkpoint", str(checkpoint), "--height", "64", "--width", "96"]) == 0
    assert "labels dynamic" in capsys.readouterr().out and read_onnx_info(out).size == (64, 96)
    image = tmp_path / "f.png"
    cv2.imwrite(str(image), frames[0])
    for backend, checkpoint_arg in (("onnxruntime", out), ("torch", checkpoint)):
        mask = tmp_path / f"{backend}.png"
        assert main(["segment", str(image), "--labels", "sky, road, car", "--out", str(tmp_path / "o.png"),
                     "--mask", str(mask), "--checkpoint", str(checkpoint_arg), "--backend", backend,
                     "--working-size", "96", "--device", "cpu"]) == 0
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "onnxruntime.png"), cv2.IMREAD_UNCHANGED),
                                  cv2.imread(str(tmp_path / "torch.png"), cv2.IMREAD_UNCHANGED))


def test_spatial_regularisation_blocks_export_and_act_per_label_set(tmp_path, frames):
    """A bottleneck head block (as the authors' ViT checkpoints have) mixes labels, so each label set
    runs through the graph on its own; the answers equal torch's."""
    torch.manual_seed(0)
    model = build_model("lseg_tiny", block_type="bottleneck", block_depth=2, block_activation="lrelu").eval()
    checkpoint = save_checkpoint(model, tmp_path / "block.safetensors")
    info = export_onnx(model, tmp_path / "block.onnx", H, W)
    assert info.has_head_block
    eager = Segmenter(checkpoint, device="cpu", working_size=W)
    onnx = Segmenter(info.path, device="cpu", working_size=W, backend="onnxruntime")
    sets = [["sky", "road", "car"], ["car", "other"]]
    for want, got in zip(eager.segment_sets(frames[0], sets), onnx.segment_sets(frames[0], sets)):
        np.testing.assert_array_equal(got.label_map, want.label_map)


def test_the_default_model_on_onnxruntime_and_openvino_with_1_7_and_150_labels(tmp_path):
    """The embedded model exported once with dynamic sizes: stride-2 logits within 1e-3 of torch and
    the label maps equal on >= 99.9 % of the pixels of a real CamVid frame, whatever the label count."""
    from lang_seg_ros.inference.preprocess import normalize, pad_bottom_right
    from lang_seg_ros.model import load_checkpoint
    from lang_seg_ros.model.checkpoint import default_checkpoint_path

    info = export_onnx(load_checkpoint(default_checkpoint_path()), tmp_path / "default.onnx", dynamic=True)
    frame = _camvid_frame()
    vocabulary = [f"thing {i}" for i in range(150)]
    eager = Segmenter(device="cpu")
    runtimes = ["onnxruntime"] + (["openvino"] if _has("openvino") else [])
    for backend in runtimes:
        onnx = Segmenter(info.path, device="cpu", backend=backend)
        for labels in (["road"], ["sky", "building", "road", "car", "tree", "pedestrian", "other"],
                       ["sky", "road", "car"] + vocabulary[:147]):
            want, got = eager.prepare(labels), onnx.prepare(labels)
            x = normalize(frame, eager.model.config.mean, eager.model.config.std, eager.device, "bgr")
            x = pad_bottom_right(x, 384, 480, eager._fill)
            with torch.inference_mode():
                delta = (onnx.backend.logits(x, [got]) - eager.backend.logits(x, [want])).abs().max().item()
            assert delta <= 1e-3, (backend, len(labels), delta)
            same = (onnx.segment(frame, "bgr", labels=got).label_map == eager.segment(frame, "bgr", labels=want).label_map)
            assert same.mean() >= 0.999, (backend, len(labels), same.mean())


def test_corrupt_truncated_or_foreign_onnx_files_are_refused_with_the_reason(tiny, tmp_path):
    import onnx

    _, _, info = tiny
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx file" * 10)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(info.path.read_bytes()[: info.path.stat().st_size // 3])
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.load(str(info.path))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    for path, why in ((garbage, "not a readable ONNX file"), (truncated, "not a readable ONNX file"),
                      (foreign, "no lang_seg_ros metadata"), (tmp_path / "missing.onnx", "not found")):
        with pytest.raises((ValueError, FileNotFoundError), match=why):
            Segmenter(path, device="cpu", backend="onnxruntime")


def _has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _camvid_frame() -> np.ndarray:
    from pathlib import Path

    import cv2

    paths = sorted((Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid" / "val").glob("*.png"))
    if not paths:
        pytest.skip("CamVid val is not beside the repository")
    return cv2.imread(str(paths[0]))


def test_the_torch_backend_can_compile_its_image_branch(tiny, frames):
    """torch.compile's graph capture ("debug": no code generation, fast enough for CI) gives the eager
    answer; on a GPU "reduce-overhead" adds CUDA graphs (bench/gpu_check.py)."""
    _, checkpoint, _ = tiny
    eager = Segmenter(checkpoint, device="cpu", working_size=W)
    compiled = Segmenter(checkpoint, device="cpu", working_size=W, compile="debug")
    np.testing.assert_array_equal(compiled.segment(frames[0], labels=["a", "b", "c"]).label_map,
                                  eager.segment(frames[0], labels=["a", "b", "c"]).label_map)
    with pytest.raises(ValueError, match="compile must be one of"):
        Segmenter(checkpoint, device="cpu", compile="fastest")
