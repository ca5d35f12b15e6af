"""`resolve_device`: the one resolver of device strings (CLI, Segmenter, trainers, checkpoints)."""
import pytest
import torch

from lang_seg_ros.model import resolve_device
from lang_seg_ros.model.checkpoint import resolve_device as from_checkpoint


def test_one_resolver_everywhere():
    from lang_seg_ros.train import lts, trainer

    assert from_checkpoint is resolve_device
    assert lts.resolve_device is resolve_device and trainer.resolve_device is resolve_device
    assert not hasattr(trainer, "_resolve_device") and not hasattr(lts, "_resolve_device")


def test_auto_cpu_and_torch_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "CPU", "cuda:", "cuda:x", " cpu", "cuda0", "", None, 0])
def test_bad_values_are_named(bad):
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps") as info:
        resolve_device(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_clear_error():
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"'{device}'.*CUDA is not available"):
            resolve_device(device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_devices_and_a_missing_index():
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"'cuda:{n}'.*{n} CUDA device"):
        resolve_device(f"cuda:{n}")


def test_trainer_and_eval_refuse_a_bad_device(tmp_path):
    from lang_seg_ros.train import load_train_config
    from lang_seg_ros.train.trainer import Trainer

    cfg = load_train_config("configs/train/tiny_synthetic.yaml", out_dir=str(tmp_path / "run"), device="gpu")
    with pytest.raises(ValueError, match="'gpu'"):
        Trainer(cfg, progress=False)
