"""Start-up: bad parameters stop the node with a clear message; a missing model does not."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: run scripts/setup_ros.sh (ROS 2 Jazzy wheels)")

from harness import Client, start_node  # noqa: E402


def _namespace(prefix: str) -> str:
    return f"/{prefix}{os.getpid()}_{random.randint(0, 99999)}"


@pytest.mark.parametrize("checkpoint,params,message", [
    ("/nonexistent/lseg.safetensors", {}, "checkpoint '/nonexistent/lseg.safetensors' is not a file"),
    ("large", {}, "checkpoint 'large' is not a file (nor an embedded model: default, default-large)"),
    (None, {"working_size": 7}, "working_size"),
    (None, {"precision": "fp8"}, "precision must be one of"),
    (None, {"labels": ", ,"}, "the label set is empty"),
    (None, {"labels": "car, CAR"}, "case is ignored"),
    (None, {"labels": 5}, "labels must be a comma-separated string or a string array"),
    (None, {"scales": [1.0] * 10_000}, "scales must hold 1 to 8 values"),
    (None, {"scales": [1.0, 9.0]}, "scales must be values in [0.1, 4.0]"),
    (None, {"device": "cuda:\u00b2"}, "device must be auto, cpu, cuda, cuda:N or mps"),
    (None, {"overlap_postprocessing": "maybe"}, "overlap_postprocessing must be one of auto, on, off"),
    (None, {"overlap_postprocessing": 1}, "overlap_postprocessing must be one of auto, on, off"),
])
def test_invalid_parameters_stop_the_node_with_a_message(tmp_path_factory, checkpoint, params, message):
    proc = start_node(tmp_path_factory, checkpoint, _namespace("s"), **params)
    try:
        proc.proc.wait(30)
    finally:
        proc.stop()
    assert proc.proc.returncode == 2, proc.log()
    assert message in proc.log() and "Traceback" not in proc.log()


def test_labels_as_a_string_array_at_start_up_win_over_the_params_file(ros, node_checkpoint, tmp_path_factory):
    """-p labels:="[road, sky, 'sign, symbol']" after config/segment.yaml's string (the harness passes
    the file first): the list is the label set, one label per entry, commas and all."""
    proc = start_node(tmp_path_factory, node_checkpoint, _namespace("l"), labels=["road", "sky", "sign, symbol"],
                      stuff_labels=["sky"])
    client = Client(ros, proc)
    try:
        client.wait_ready()
        out = client.send(client.make_image())
        assert list(out.labels) == ["road", "sky", "sign, symbol"] and list(out.label_is_stuff) == [False, True, False]
        current = client.spin_until(lambda: client.out.get("current_labels"), 5.0)
        assert list(current[-1].labels) == ["road", "sky", "sign, symbol"]
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


@pytest.mark.parametrize("switch", [True, False])
def test_overlap_postprocessing_on_or_off_as_yaml_reads_them_starts_the_node(ros, node_checkpoint, tmp_path_factory,
                                                                            switch):
    """`-p overlap_postprocessing:=on` (the documented value) reaches the node as the boolean true:
    rcl reads parameters as YAML 1.1. It means "on", it does not stop the node."""
    proc = start_node(tmp_path_factory, node_checkpoint, _namespace("o"), overlap_postprocessing=switch)
    client = Client(ros, proc)
    try:
        client.wait_ready()
        assert client.send(client.make_image()) is not None
        line = proc.wait_log(r"model loaded from .*", timeout=30.0)
        assert line is not None and ("finished on a second thread" in line.group(0)) == switch, proc.log()[-2000:]
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_a_string_given_after_a_yaml_boolean_wins(ros, node_checkpoint, tmp_path_factory):
    """rclpy reads a parameter's boolean before its string: `off` (a boolean) and then `:='on'` must
    give "on", the last one given, as for any other parameter."""
    proc = start_node(tmp_path_factory, node_checkpoint, _namespace("w"), overlap_postprocessing=False,
                      extra_args=["-p", "overlap_postprocessing:='on'"])
    client = Client(ros, proc)
    try:
        client.wait_ready()
        line = proc.wait_log(r"model loaded from .*", timeout=30.0)
        assert line is not None and "finished on a second thread" in line.group(0), proc.log()[-2000:]
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_overlap_auto_on_a_cpu_finishes_frames_on_a_second_thread_only_when_a_core_is_left_free(
        ros, node_checkpoint, tmp_path_factory):
    """`auto` on a CPU: the finisher needs a core the model does not use. With cpu_threads equal to
    the cores, or left to torch (0), the frames are finished on the worker; with fewer (on a
    machine of 2+ cores), on the finisher thread. The "model loaded" line says which."""
    from lang_seg_ros.model.device import cpu_cores

    cores = cpu_cores()
    for threads, overlapped in ((cores, False), (0, False), (max(1, cores - 1), cores > 1)):
        proc = start_node(tmp_path_factory, node_checkpoint, _namespace("a"), overlap_postprocessing="auto",
                          cpu_threads=threads)
        client = Client(ros, proc)
        try:
            client.wait_ready()
            assert client.send(client.make_image()) is not None
            line = proc.wait_log(r"model loaded from .*", timeout=30.0)
            assert line is not None and (not threads or f" {threads} CPU thread" in line.group(0)), proc.log()[-2000:]
            assert ("finished on a second thread" in line.group(0)) == overlapped, line.group(0)
        finally:
            client.close()
            assert proc.stop() == 0, proc.log()[-3000:]


def test_cpu_threads_back_to_0_gives_torch_its_own_thread_count_again(ros, node_checkpoint, tmp_path_factory):
    """cpu_threads 0 = torch's default: after a reload with 1 thread, setting 0 restores the count the
    node started with (not the 1 left behind), and `auto` then finishes frames on the worker."""
    import subprocess
    import sys

    default = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                 capture_output=True, text=True, check=True).stdout)
    proc = start_node(tmp_path_factory, node_checkpoint, _namespace("c"), overlap_postprocessing="auto",
                      cpu_threads=1)
    client = Client(ros, proc)
    try:
        client.wait_ready()
        start = len(proc.log())
        assert client.set_parameters(cpu_threads=0)[0].successful
        line = proc.wait_log(r"model loaded from .*", timeout=60.0, start=start)
        assert line is not None and f" {default} CPU thread" in line.group(0), proc.log()[-2000:]
        assert "finished on a second thread" not in line.group(0)
        assert client.send(client.make_image()) is not None
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_without_a_usable_model_the_node_explains_and_recovers(ros, node_checkpoint, tmp_path_factory):
    """checkpoint '' = the embedded default; where there is none, a clear error and the node stays up."""
    proc = start_node(tmp_path_factory, None, _namespace("e"))
    client = Client(ros, proc)
    try:
        match = proc.wait_log(r"model loaded from the embedded default|could not load the embedded default model"
                              r".*set the 'checkpoint' parameter", timeout=60.0)
        assert match, proc.log()
        if "could not load" in match.group(0):
            start = len(proc.log())
            client.out.get("diagnostics").clear()
            msg = client.make_image()
            client.publish(msg)
            assert proc.wait_log("ignored: no model loaded", timeout=10.0, start=start)
            errors = client.spin_until(lambda: [s for s in client.out.get("diagnostics") if s.level == s.ERROR], 5.0)
            assert errors and "could not load the embedded default model" in errors[-1].message
            assert not client.out.by_stamp("segmentation", msg.header)
        assert all(r.successful for r in client.set_parameters(checkpoint=str(node_checkpoint)))
        assert proc.wait_log("model loaded from .*tiny.safetensors", timeout=60.0)
        assert client.send(client.make_image()) is not None
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "lang_seg_ros" / "weights"
                          / "default-large.safetensors").is_file(), reason="default-large not in this checkout")
def test_checkpoint_default_large_names_the_larger_embedded_model(ros, tmp_path_factory):
    """`checkpoint: default-large` is no file: the node loads the package's larger model and answers."""
    proc = start_node(tmp_path_factory, "default-large", _namespace("g"), labels="road, sky, car")
    client = Client(ros, proc)
    try:
        assert proc.wait_log(r"model loaded from default-large \(default-large\.safetensors\) on cpu",
                             timeout=90.0), proc.log()[-2000:]
        out = client.send(client.make_image())
        assert out is not None and list(out.labels) == ["road", "sky", "car"]
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_importing_the_node_loads_no_torch():
    """The node's interfaces come up before the model (and torch) loads in the worker."""
    import subprocess
    import sys

    code = "import sys, lang_seg_ros.ros.node; assert 'torch' not in sys.modules, 'the node imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_node_on_the_onnxruntime_backend_answers_like_torch(ros, node_checkpoint, tmp_path_factory, tmp_path,
                                                                monkeypatch):
    """backend: onnxruntime with a .safetensors checkpoint: exported once (into the cache), then the
    same mask over DDS as the torch model gives on the same frame."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.ros.image_conversion import image_to_numpy

    monkeypatch.setenv("LANG_SEG_ROS_CACHE", str(tmp_path))
    proc = start_node(tmp_path_factory, node_checkpoint, _namespace("x"), backend="onnxruntime")
    client = Client(ros, proc)
    try:
        client.wait_ready(timeout=120.0)
        assert proc.wait_log("backend onnxruntime", timeout=1.0) and list((tmp_path / "onnx").glob("*.onnx"))
        msg = client.make_image()
        out = client.send(msg)
        eager = Segmenter(node_checkpoint, device="cpu", working_size=128)
        want = eager.segment(np.array(image_to_numpy(msg)), "rgb", labels=list(out.labels)).label_map
        assert (image_to_numpy(out.mask).astype(np.int64) == want).mean() >= 0.999
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]
