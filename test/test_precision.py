"""`precision: auto` picks what the device runs natively, read from the CPU, never guessed; a
precision the device only emulates is kept when asked for, with a warning that says the cost
(bf16 on an AVX2-only CPU ran 33x slower than fp32 with no word said)."""
import logging

import pytest
import torch

from lang_seg_ros.device_spec import cpu_flags, cpu_has_native_bf16
from lang_seg_ros.model import device as device_rule
from lang_seg_ros.model.device import resolve_precision

CPU = torch.device("cpu")
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2\n"
X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_tile amx_bf16\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha1 crc32 atomics bf16 i8mm\n"


def test_cpu_flags_are_read_from_cpuinfo_on_x86_and_arm():
    assert "avx2" in cpu_flags(X86_AVX2) and "avx512_bf16" not in cpu_flags(X86_AVX2)
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(X86_BF16)
    assert "bf16" in cpu_flags(ARM_BF16)
    assert cpu_flags("no flags here") == set()


@pytest.mark.parametrize("cpuinfo, native", [(X86_AVX2, False), (X86_BF16, True), (ARM_BF16, True)])
def test_native_bf16_is_the_cpus_flags(cpuinfo, native):
    assert cpu_has_native_bf16(cpu_flags(cpuinfo), env={}) is native


@pytest.mark.parametrize("env", [{"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"},
                                 {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}])
def test_kernels_held_below_avx512_bf16_count_as_emulated(env):
    """How CI's AVX2 class is tested on an AVX-512 machine: the forced kernel level wins."""
    assert not cpu_has_native_bf16(cpu_flags(X86_BF16), env=env)
    assert cpu_has_native_bf16(cpu_flags(X86_BF16), env={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"})


@pytest.mark.parametrize("native, backend, expected", [(True, "torch", "bf16"), (True, "openvino", "bf16"),
                                                       (True, "onnxruntime", "fp32"), (False, "torch", "fp32"),
                                                       (False, "openvino", "fp32")])
def test_auto_on_a_cpu(monkeypatch, native, backend, expected):
    monkeypatch.setattr(device_rule, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", CPU, backend) == expected


@pytest.mark.parametrize("major, expected", [(6, "fp32"), (7, "fp16"), (9, "fp16")])
def test_auto_on_a_gpu_by_compute_capability(monkeypatch, major, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    assert resolve_precision("auto", torch.device("cuda"), "torch") == expected


def test_an_emulated_precision_is_kept_with_a_warning_of_its_cost(monkeypatch, caplog):
    monkeypatch.setattr(device_rule, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("bf16", CPU) == "bf16"
    assert "emulated" in caplog.text and "33x slower" in caplog.text
    caplog.clear()
    monkeypatch.setattr(device_rule, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("bf16", CPU) == "bf16" and resolve_precision("fp32", CPU) == "fp32"
    assert caplog.text == ""


def test_a_bad_precision_is_named():
    with pytest.raises(ValueError, match="auto, fp32, fp16, bf16.*'int4'"):
        resolve_precision("int4", CPU)


def test_node_and_cli_default_to_auto_and_the_segmenter_says_what_it_chose(monkeypatch):
    from lang_seg_ros.cli import build_parser
    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.model import build_model

    assert build_parser().parse_args(["segment", "x.png", "--labels", "a", "--out", "o.png"]).precision == "auto"
    monkeypatch.setattr(device_rule, "cpu_has_native_bf16", lambda: False)
    segmenter = Segmenter(build_model("lseg_tiny"), device="cpu", precision="auto")
    assert segmenter.precision == "fp32" and segmenter.dtype == torch.float32


def test_node_parameter_defaults_to_auto():
    pytest.importorskip("rclpy")
    from lang_seg_ros.ros.parameters import PARAMS_BY_NAME

    assert PARAMS_BY_NAME["precision"].default == "auto" and "auto" in PARAMS_BY_NAME["precision"].choices


def test_auto_runs_an_exported_file_at_its_own_precision(tmp_path, monkeypatch):
    """An fp32 export with precision auto is no error on a GPU that would pick fp16: the file decides."""
    pytest.importorskip("openvino")
    from lang_seg_ros.inference import Segmenter
    from lang_seg_ros.inference.backends.onnx_export import export_onnx
    from lang_seg_ros.model import build_model

    torch.manual_seed(0)
    path = tmp_path / "tiny.onnx"
    export_onnx(build_model("lseg_tiny").eval(), path, 64, 64)
    monkeypatch.setattr(device_rule, "cpu_has_native_bf16", lambda: True)  # auto alone would say bf16
    assert Segmenter(str(path), device="cpu", precision="auto", backend="openvino").precision == "fp32"
