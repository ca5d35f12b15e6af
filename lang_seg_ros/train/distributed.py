"""Data-parallel training with PyTorch's own engine (DistributedDataParallel; Li et al. 2020,
"PyTorch Distributed", VLDB, arXiv 2006.15704).

``torchrun --nproc_per_node N -m lang_seg_ros.train CONFIG`` starts N processes; each builds the
same model, takes its slice of every global batch, and DDP averages the gradients. The run is
the single-process run up to float rounding:

- the global batch of iteration ``i`` is the single-process batch (same samples, same
  augmentation draws); rank ``r`` computes samples ``[r*B/N, (r+1)*B/N)`` of it;
- the loss is normalised by the pixel weight summed over all ranks (an all-reduce), and scaled
  by N because DDP averages gradients, so the gradient is the whole batch's;
- BatchNorm normalises with statistics of the *global* batch (:func:`convert_global_batchnorm`):
  per-rank statistics would make N processes train a different model than one. PyTorch's
  ``SyncBatchNorm`` does this on GPUs only; this version runs on CPU (gloo) and GPU alike.

"Up to float rounding" per step: over many steps the runs stay that close only while the step
is continuous in float noise. ReLU's gradient is not (a pre-activation within rounding of 0
passes its gradient in one run and not in the other), so two runs, or the same run on two
kinds of CPU, can part by far more than rounding after such a step;
``test/test_train_distributed.py`` checks the claim with a smooth activation.

Gloo on CPU, NCCL on CUDA. Only rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import os
import types
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

# global_batch_norm needs an all-reduce with a backward (summing the statistics' gradients over
# ranks): torch.distributed.nn's, deprecated in favour of functional collectives that this code
# has not been checked against. Keep it, without one notice per BatchNorm call.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated",
                        category=FutureWarning)

__all__ = ["DistContext", "all_reduce_sum", "convert_global_batchnorm", "global_batch_norm", "init_distributed"]


@dataclass
class DistContext:
    """Where this process stands in the run: ``rank`` of ``world_size``; 1 process = (0, 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``PORT`` in the environment); a lone process gets ``DistContext()``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, local, backend)


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``value`` over ranks (no gradient); ``value`` itself with one process."""
    if not ctx.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out


def global_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm of ``x`` (B, C, ...) with the mean and variance of the batch
    gathered over all ranks, updating ``bn``'s running statistics as ``nn.BatchNorm2d`` does
    (unbiased variance, ``momentum`` or the cumulative average). Differentiable: the
    all-reduce's backward sums the gradients of the statistics over ranks, as
    ``SyncBatchNorm`` does.

    Two passes, as PyTorch's own CPU batch norm: the global mean first, then the sum of squared
    deviations from it. The one-pass ``E[x^2] - mean^2`` loses about ``eps_f32 * mean^2 / var``
    of the variance to cancellation: on a channel with ``|mean| / std`` of 100 or more (a
    near-constant channel) N processes would normalise visibly differently from one."""
    from torch.distributed.nn.functional import all_reduce

    dims = [0, *range(2, x.dim())]
    xf = x.float()
    c = x.shape[1]
    shape = [1, c] + [1] * (x.dim() - 2)
    count = torch.tensor([x.numel() / c], dtype=torch.float32, device=x.device)
    sums = all_reduce(torch.cat([xf.sum(dims), count]))
    n = sums[-1]
    mean = sums[:c] / n
    centred = xf - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims)) / n
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - m).add_(m * mean.detach())
            bn.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1.0))
    y = centred * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y.to(x.dtype)


def _global_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return type(self).forward(self, x)
    y = global_batch_norm(self, x)
    # timm's BatchNormAct2d (the EfficientNet backbone): norm, then dropout and activation.
    if hasattr(self, "act"):
        y = self.act(self.drop(y) if hasattr(self, "drop") else y)
    return y


def convert_global_batchnorm(model: nn.Module) -> int:
    """Make every BatchNorm layer of ``model`` (``nn.BatchNorm*d`` and subclasses such as timm's
    ``BatchNormAct2d``) normalise with global-batch statistics while a process group of more
    than one rank exists; otherwise they behave exactly as before. Parameters, buffers and
    state-dict keys are unchanged. Returns the number of layers converted."""
    n = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
            module.forward = types.MethodType(_global_forward, module)
            n += 1
    return n


