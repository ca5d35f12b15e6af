"""Logits -> label map and confidence, on the device that holds the logits.

Only the (H, W) label map and confidence leave the device; the (N, H, W) full-resolution logits
are never built in single-scale mode, so the cost of a frame hardly grows with the label count.
With the torch backend not even the stride-2 (N, h, w) logits are written: `FactoredLogits`
computes each block of cells' logits from the fused features where the decision reads them.

`decide_stride2` gives the argmax of the published rule (bilinear x2 upsampling of the stride-2
logits with align_corners=True, crop, bilinear resize to the image), exactly up to float
rounding: every output pixel's logits are a convex combination of a few neighbouring grid
cells, so a label that is best at all of them is best at the pixel. Only pixels whose
neighbours disagree (object borders: a few percent of a frame) get all their labels interpolated.

Confidence is the chosen label's softmax probability: exact at those border pixels and wherever
it falls below `exact_below` (the threshold: a pixel is never dropped for the approximation);
elsewhere with the log-partition function interpolated from the grid cells (exact where the
neighbouring logits agree; by convexity of log-sum-exp never above the exact probability).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: Elements (pixels x labels, or pixels x features for factored logits) interpolated at once for
#: border pixels: bounds memory for big label sets.
_CHUNK_ELEMENTS = 1 << 22
#: Elements per block of the per-cell decision: its one buffer (512 KiB) stays in a core's L2 cache,
#: the footprint of the two 2^16-element buffers it replaced (the exponentials of the logits
#: themselves need no difference buffer). One core, 640x480, 8 CamVid frames, decision without the
#: head: 150 labels 30.8 -> 27.9 ms, 1024 labels 128 -> 114 ms against 2^16 elements.
_BLOCK_ELEMENTS = 1 << 17
#: Label sets up to this size are decided plane by plane on the CPU (`_decide_planes`): numpy's
#: row-wise argmax is a scalar loop below 64 labels a row, while a block's planes take the max,
#: the index and the normaliser in passes vectorised over its cells. One core, 46,080 cells
#: (480x360): 11 labels 2.2 -> 1.3 ms, 20 labels 3.3 -> 2.0, 32 labels 4.3 -> 3.0, 48 labels
#: 5.7 -> 4.9; from ~56 labels the row pass is faster (64: 5.5 against 7.0 ms).
_PLANE_LABELS = 48


@dataclass(frozen=True)
class FactoredLogits:
    """Stride-2 logits that are never written whole: cell c's label vector is
    scale[c] * (features[c] @ weight.T + bias), LSeg's folded 1x1 head (`LSeg.fold_head`,
    `LSeg.pixel_scale`), computed a cache-sized block of cells at a time where the decision reads
    it. Writing a frame's logits and reading them back cost more than the decision's arithmetic
    (640x480, 150 labels, one core: the head 50 ms and the decision 28 ms, fused ~2x less).

    features: (h2 * w2, F) fp32 fused features, row-major cells; weight: (N, F) and bias: (N,)
    fp32, the label set's `label_weight` / `label_bias`; scale: (h2 * w2,) fp32, > 0; grid: (h2, w2);
    round_to: the dtype the unfused path returns its logits in (bf16 / fp16 image branches), so
    both give the same decisions, or None.
    """

    features: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor
    grid: tuple[int, int]
    round_to: torch.dtype | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.weight.shape[0], *self.grid)

    @property
    def device(self) -> torch.device:
        return self.features.device

    def rows(self, cells: slice | torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(K, N) logits of the cells `cells` (a slice or (K,) indices), into `out` when given."""
        if isinstance(cells, slice):
            features, scale = self.features[cells], self.scale[cells]
        else:
            features, scale = self.features.index_select(0, cells), self.scale.index_select(0, cells)
        out = torch.addmm(self.bias, features, self.weight.t(), out=out).mul_(scale[:, None])
        if self.round_to is not None:
            out.copy_(out.to(self.round_to))
        return out


@functools.lru_cache(maxsize=16)
def _taps(out_size: int, work_size: int, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid indices (out_size, T) and weights (out_size, T) of the published resampling along one
    axis: x2 upsampling of a `grid_size` grid with align_corners=True, crop to `work_size`, then
    (when it differs) an align_corners=True resize to `out_size`. T = 2, or 3 with the resize.
    Computed once per frame size, in float64 on the CPU (not every accelerator has float64)."""
    def linear(size: int, scale: float, limit: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(size, dtype=torch.float64) * scale
        low = pos.floor().long().clamp_(0, limit - 1)
        return low, (low + 1).clamp_(max=limit - 1), pos - low

    g0, g1, a = linear(work_size, (grid_size - 1) / max(1, 2 * grid_size - 1), grid_size)
    if work_size == out_size:
        index, weight = torch.stack([g0, g1], 1), torch.stack([1 - a, a], 1)
    else:
        y0, y1, b = linear(out_size, (work_size - 1) / max(1, out_size - 1), work_size)
        taps = torch.stack([g0[y0], g1[y0], g0[y1], g1[y1]], 1)
        weights = torch.stack([(1 - b) * (1 - a[y0]), (1 - b) * a[y0], b * (1 - a[y1]), b * a[y1]], 1)
        # The four taps fall on at most three consecutive cells (a working pixel is half a cell):
        # merge them into three slots, first..first + 2, so later passes do 3 instead of 4.
        first = taps[:, 0:1]
        index = (first + torch.arange(3)).clamp_(max=grid_size - 1)
        weight = torch.stack([(weights * (taps == first + k)).sum(1) for k in range(3)], 1)
    return index, weight.float()


def _exp_(block: torch.Tensor) -> torch.Tensor:
    """exp in place. On the CPU by numpy's SIMD exp (AVX2 and AVX-512 kernels, float32, within
    2 ulp): half the time of torch's here (one core, 76,800 x 150 logits: 9.7 -> 5.4 ms; AMD EPYC
    with AVX-512). Overflow to inf is expected and handled by the caller, as with torch: no warning."""
    if block.device.type == "cpu" and block.dtype == torch.float32:
        values = block.numpy()
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            np.exp(values, out=values)
        return block
    return block.exp_()


def _rows_block(logits: torch.Tensor | FactoredLogits, buffer: torch.Tensor, start: int, stop: int,
                factored: bool) -> torch.Tensor:
    """Rows start:stop of labels-last (M, N) logits, or of factored ones computed here, copied
    into the cache-sized `buffer` (the decision then works in place)."""
    block = buffer[:stop - start]
    if factored:
        logits.rows(slice(start, stop), out=block)
    else:
        block.copy_(logits[start:stop])
    return block


def _decide_planes(planes: np.ndarray, index: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """Labels-first float32 logits `planes` (N, M) -> into `index` (M,) int64 the best label (the
    first of equal maxima) and into `out` (M,) its log softmax probability, -log(sum(exp(logits -
    best))). `scratch` (N, M) float32 may be `planes` itself (then overwritten).

    Every step is a vectorised pass over the M cells of one plane at a time: the max across
    planes, the index (planes compared to it, last label first so the first maximum is written
    last), the normaliser. The exponentials are of the differences to the best, always: the
    scratch planes are written anyway, so the subtraction costs no extra pass and needs no
    range check. A NaN logit gives a NaN probability (index N - 1)."""
    best = planes.max(axis=0)
    index.fill(planes.shape[0] - 1)  # where no earlier label equals the best (or it is NaN)
    for label in range(planes.shape[0] - 2, -1, -1):
        np.copyto(index, label, where=planes[label] == best)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):  # inf - inf: NaN, said by the result
        np.subtract(planes, best, out=scratch)
        np.exp(scratch, out=scratch)
        np.log(scratch.sum(axis=0), out=out)
    np.negative(out, out=out)


def _best_and_log_probability(logits: torch.Tensor | FactoredLogits, labels_first: bool = False
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, N) logits -> (M,) best label (int64, the first of equal maxima) and (M,) log softmax
    probability of that label, log(exp(best) / sum(exp(logits))). With `labels_first` the logits
    are (N, M) (an exported graph's planes, on the CPU); `FactoredLogits` are computed block by block.

    One pass over the logits in row blocks of ~512 KiB: each block is copied once into a buffer
    that stays in the core's cache (planes by OpenCV's transpose of the block's columns), and its
    argmax, exp and sum read it there (a frame's logits are tens of MiB at 150 labels; reading
    them once per reduction, or writing a temporary of that size, costs more than the
    arithmetic). On a CPU the argmax is numpy's vectorised scan per row; torch's max-with-index
    over a short last dimension is scalar (one core, 640x480 frame, 150 labels: the decision
    36 -> 28 ms, `bench/bench_postprocess.py`). The exponentials are of the logits themselves,
    not of their difference to the row's best: LSeg's logits are cosines times the temperature
    (|logit| <= 1 / 0.07), far inside float32's range, and that saves a pass over the block
    (150 labels: 21.7 -> 19.8 ms); a block with a row whose exponentials leave the safe range (a
    model with larger logits, NaN) is computed again with each row's best subtracted. On an
    accelerator the best is always subtracted: memory passes are cheap there, a check is not.
    Up to `_PLANE_LABELS` labels on the CPU each block is read as planes instead (an exported
    graph's where they lie, rows transposed into a cache-sized buffer): `_decide_planes`."""
    factored = isinstance(logits, FactoredLogits)
    if factored:
        n, rows, dtype = logits.shape[0], logits.features.shape[0], torch.float32
    else:
        (n, rows), dtype = logits.shape if labels_first else logits.shape[::-1], logits.dtype
    index = torch.empty(rows, dtype=torch.int64, device=logits.device)
    out = torch.empty(rows, dtype=dtype, device=logits.device)
    step = max(1, _BLOCK_ELEMENTS // n)
    block_buffer = torch.empty((min(step, rows), n), dtype=dtype, device=logits.device)
    on_cpu = logits.device.type == "cpu"
    planes = logits.detach().numpy() if labels_first else None
    if on_cpu and dtype == torch.float32 and n <= _PLANE_LABELS:
        scratch = np.empty((n, min(step, rows)), np.float32)
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            if planes is not None:  # the caller's planes, read only
                source = planes[:, start:stop]
            else:  # a row block, transposed into the scratch planes (OpenCV: ~0.1 ms a frame)
                source = cv2.transpose(_rows_block(logits, block_buffer, start, stop, factored).numpy(),
                                       dst=scratch[:, :stop - start])
            _decide_planes(source, index[start:stop].numpy(), out[start:stop].numpy(), scratch[:, :stop - start])
        return index, out

    def load(start: int, stop: int) -> torch.Tensor:
        if labels_first:
            block = block_buffer[:stop - start]
            cv2.transpose(planes[:, start:stop], dst=block.numpy())
            return block
        return _rows_block(logits, block_buffer, start, stop, factored)

    total = torch.empty(rows, dtype=dtype, device=logits.device)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        block = load(start, stop)
        best = index[start:stop]
        if on_cpu:
            best.copy_(torch.from_numpy(block.numpy().argmax(axis=1)))
        else:  # an accelerator: the best subtracted (no check, which would wait for the device)
            torch.argmax(block, dim=1, out=best)
            block.sub_(block.gather(1, best[:, None]))
        torch.sum(_exp_(block), dim=1, out=total[start:stop])
        torch.gather(block, 1, best[:, None], out=out[start:stop, None])
    if on_cpu:
        # Checked once for the frame, not per block (each small op costs microseconds): exp(best)
        # under 2e-31 (best < -70: the smaller terms would lose precision), an overflowing sum or
        # NaN; such a row's block is decided again with each row's best subtracted.
        tiny, huge = torch.finfo(dtype).tiny * 2 ** 24, torch.finfo(dtype).max / 2
        unsafe = ~((out > tiny) & (total < huge))
        if bool(unsafe.any()):
            for start in sorted({row - row % step for row in unsafe.nonzero()[:, 0].tolist()}):
                stop = min(rows, start + step)
                block = load(start, stop)
                block.sub_(block.gather(1, index[start:stop, None]))
                torch.sum(_exp_(block), dim=1, out=total[start:stop])
                out[start:stop] = 1.0
    return index, out.div_(total).log_()


def _cell_vectors(index: torch.Tensor, table: torch.Tensor | None, planes: torch.Tensor | None,
                  factored: FactoredLogits | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The label vectors of the grid cells in `index` (B, T), for `F.embedding_bag`: (source (K, N),
    rows (B, T) into it). From a labels-last `table` (cells, N) directly; from labels-first
    `planes` (N, cells) only the cells used are gathered (one row-local gather per label plane)
    and transposed, never the whole frame; from `factored` logits only the cells used are computed."""
    if table is not None:
        return table, index
    cells = planes.shape[1] if planes is not None else factored.features.shape[0]
    used = torch.zeros(cells, dtype=torch.bool, device=index.device)
    used[index.reshape(-1)] = True
    position = torch.cumsum(used, 0) - 1
    used = used.nonzero().squeeze(1)
    source = _transposed(planes.index_select(1, used)) if planes is not None else factored.rows(used)
    return source, position[index]


def _interpolated(factored: FactoredLogits, index: torch.Tensor, weight: torch.Tensor) -> FactoredLogits:
    """The logits of pixels whose taps are the cells `index` (B, T) with weights `weight` (B, T),
    factored again with the same head: it is linear, so sum_t w_t s_t (W f_t + b) = c (W g + b)
    with c = sum_t w_t s_t (> 0: the weights are >= 0 and sum to 1, the scales are > 0) and
    g = sum_t w_t s_t f_t / c. One F-wide row per pixel instead of its T cells' N logits, and no
    per-frame search for the cells used (CamVid val at 640x480, one core, head + decision:
    150 labels 35.3 -> 33.4 ms, 1024 labels 158 -> 143 ms); equal up to float rounding (label maps
    identical on 8 frames, confidences within 1.2e-6)."""
    mixing = weight * factored.scale[index]  # (B, T)
    scale = mixing.sum(1)
    features = F.embedding_bag(index, factored.features, per_sample_weights=mixing, mode="sum").div_(scale[:, None])
    return FactoredLogits(features, factored.weight, factored.bias, scale, (index.shape[0], 1))


def _transposed(matrix: torch.Tensor) -> torch.Tensor:
    """(A, B) -> (B, A) contiguous. On the CPU by OpenCV's blocked transpose (640x480 float32 or
    int32, one core: ~0.7 -> 0.1 ms); torch's strided copy elsewhere."""
    if matrix.device.type == "cpu" and matrix.is_contiguous() and matrix.dtype in (torch.float32, torch.int32):
        return torch.from_numpy(cv2.transpose(matrix.detach().numpy()))
    return matrix.t().contiguous()


def _resample(grid: torch.Tensor, iy: torch.Tensor, wy: torch.Tensor, ix: torch.Tensor,
              wx: torch.Tensor) -> torch.Tensor:
    """(h2, w2) float grid -> (W, H), transposed: the weighted taps along y, then along x. Both
    passes gather whole rows (the transpose between them makes the x pass one too): several
    times faster than gathering columns."""
    rows = grid.index_select(0, iy[:, 0]).mul_(wy[:, 0, None])
    for t in range(1, iy.shape[1]):
        rows.addcmul_(grid.index_select(0, iy[:, t]), wy[:, t, None])
    rows = _transposed(rows)
    out = rows.index_select(0, ix[:, 0]).mul_(wx[:, 0, None])
    for t in range(1, ix.shape[1]):
        out.addcmul_(rows.index_select(0, ix[:, t]), wx[:, t, None])
    return out


def decide_stride2(logits: torch.Tensor | FactoredLogits, work_hw: tuple[int, int], out_hw: tuple[int, int],
                   exact_below: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Label map (H, W) int32 and confidence (H, W) float32 from stride-2 logits.

    logits: (N, h2, w2) for a padded working image whose top-left (h, w) = `work_hw` pixels are
    the image content, or the same as `FactoredLogits` (never written whole); out_hw: (H, W) of
    the input image; exact_below: confidences under this are computed exactly (pass the threshold
    the caller applies).

    Cost (a per-frame step): per grid cell one pass over its labels (argmax and softmax normaliser);
    per pixel two row-gather passes (confidence, label); per border pixel one weighted gather of
    its taps' label vectors (`embedding_bag`), or of their features for fp32 factored logits, so
    only the border grows with the label count.
    """
    factored = logits if isinstance(logits, FactoredLogits) else None
    if factored is None:
        logits = logits.float()
    n, h2, w2 = logits.shape
    device = logits.device
    height, width = out_hw
    if n == 1:
        label = torch.zeros((height, width), dtype=torch.int32, device=device)
        return label, torch.ones((height, width), device=device)
    iy, wy = (t.to(device) for t in _taps(height, work_hw[0], h2))
    ix, wx = (t.to(device) for t in _taps(width, work_hw[1], w2))
    # A label vector per grid cell: labels-last rows (h2 * w2, N), free for the torch backend
    # (LSeg.decoded_logits lays its logits out so); an exported graph's (N, h2, w2) on the CPU is
    # read as planes, block by block, never transposed whole (480x360, 150 labels: that
    # transpose alone took 7.5 ms); factored logits computed block by block
    table = planes = None
    if factored is None:
        cells = logits.permute(1, 2, 0)
        if not cells.is_contiguous() and device.type == "cpu" and logits.is_contiguous():
            planes = logits.view(n, h2 * w2)
        else:
            table = cells.contiguous().view(h2 * w2, n)
    # Best label and the log of its softmax probability per cell; the latter interpolated, then
    # exp: the confidence wherever the taps agree (exact there up to rounding: best and
    # log-partition are both linear in the taps' logits only where one label wins all of them;
    # elsewhere recomputed below)
    label_grid, log_conf_grid = _best_and_log_probability(
        factored if factored is not None else table if planes is None else planes, labels_first=planes is not None)
    label_grid, log_conf_grid = label_grid.view(h2, w2), log_conf_grid.view(h2, w2)
    confidence = _resample(log_conf_grid, iy, wy, ix, wx).exp_()  # (W, H)
    # A pixel whose taps all hold one label takes it. Its taps lie in a window of (ky, kx) cells
    # from its first tap (y0, x0): cells whose window is not of one label are marked -1 first,
    # so one gather per pixel gives both the label and whether it needs the exact pass.
    y0, x0 = iy.min(1).values, ix.min(1).values
    ky, kx = int((iy.max(1).values - y0).max()) + 1, int((ix.max(1).values - x0).max()) + 1
    grid = F.pad(label_grid[None, None].float(), (0, kx - 1, 0, ky - 1), mode="replicate")[0, 0]
    code = label_grid.to(torch.int32)
    for dy in range(ky):
        for dx in range(kx):
            if dy or dx:
                code.masked_fill_(grid[dy:dy + h2, dx:dx + w2] != grid[:h2, :w2], -1)
    label = _transposed(code.index_select(0, y0)).index_select(0, x0)  # (W, H)
    exact = label < 0
    if exact_below > 0:
        exact |= confidence < exact_below
    cols, rows = exact.nonzero(as_tuple=True)
    if rows.numel():
        # Tap k of a pixel is cell (y0 + ky_k, x0 + kx_k) (`_taps`: consecutive cells; a slot past
        # the grid's edge has weight 0, its index is clamped into the table)
        ty, tx = iy.shape[1], ix.shape[1]
        offsets = (torch.arange(ty, device=device)[:, None] * w2
                   + torch.arange(tx, device=device)[None, :]).reshape(-1)
        # Factored fp32 logits: each pixel's features interpolated, its logits computed block by
        # block (`_interpolated`). Rounded ones (bf16 / fp16 branches) interpolate the cells'
        # rounded logits, as the written path does, so both decide alike.
        mixed = factored is not None and factored.round_to is None
        step = max(1, _CHUNK_ELEMENTS // (factored.features.shape[1] if mixed else n))
        for start in range(0, rows.numel(), step):
            r, c = rows[start:start + step], cols[start:start + step]
            index = ((y0[r] * w2 + x0[c])[:, None] + offsets).clamp_(max=h2 * w2 - 1)
            weight = (wy[r][:, :, None] * wx[c][:, None, :]).reshape(-1, ty * tx)
            if mixed:
                full = _interpolated(factored, index, weight)
            else:
                source, rows_of = _cell_vectors(index, table, planes, factored)
                full = F.embedding_bag(rows_of, source, per_sample_weights=weight, mode="sum")  # (B, N)
            best, log_probability = _best_and_log_probability(full)
            label[c, r] = best.to(torch.int32)
            confidence[c, r] = log_probability.exp_()
    return _transposed(label), _transposed(confidence.clamp_(max=1.0))


def decide_full(chunks: Iterable[torch.Tensor], expand: Callable[[torch.Tensor], torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax and softmax confidence over full-resolution logits split into label chunks, never
    holding all labels at once (multi-scale evaluation, where logits are summed at full size).

    `expand` turns a chunk (1, n, ...) into full-resolution logits (1, n, H, W).
    """
    best = best_index = lse = None
    offset = 0
    for chunk in chunks:
        full = expand(chunk)[0].float()
        value, index = full.max(dim=0)
        chunk_lse = torch.logsumexp(full, dim=0)
        if best is None:
            best, best_index, lse = value, index + offset, chunk_lse
        else:
            better = value > best
            best = torch.where(better, value, best)
            best_index = torch.where(better, index + offset, best_index)
            lse = torch.logaddexp(lse, chunk_lse)
        offset += full.shape[0]
    return best_index, torch.exp(best - lse)
