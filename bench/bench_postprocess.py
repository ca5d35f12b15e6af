"""Post-processing alone, on one core: stride-2 logits -> label map -> regions -> messages.

    python bench/bench_postprocess.py                         # 640x480, 20 and 150 labels
    python bench/bench_postprocess.py --size 480x360 --labels 20 --threads 2

The image branch runs once per frame beforehand (not timed); then, per frame, the median of
--repeats runs of each stage: `decide` (label map and confidence from the fused features, as the
Segmenter does after the image branch: the folded head's logits written whole and decided, or,
past `TorchBackend.factor_above_bytes`, computed block by block inside the decision; both ways
are printed after the table), `objects` (regions: connected components, scores,
boxes, centroids, masks), `instances` (the same with watershed-split instances, every label a
thing), `inst+stuff` (the same with Cityscapes' stuff classes, road ... sky, marked stuff as a
panoptic set-up marks them: stuff is never split), `overlay`, `messages` (the node's messages for the frame, needs the
ROS wheels; skipped without them) and `+standard` (what the standard outputs add to a frame
with a synthetic ground-plane depth: the organised points aligned with the mask and the
confidence, aligned_points, detections and detections_3d messages). Prints the machine first,
then "after" (objects + messages: everything after the label decision, with and without
instances, and with instances and stuff) and each label count's decision time as a ratio of the
smallest count's.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from _machine import cpu_name  # noqa: E402 - bench/_machine.py
from lang_seg_ros.inference import Segmenter  # noqa: E402
from lang_seg_ros.inference.decide import decide_stride2  # noqa: E402
from lang_seg_ros.inference.preprocess import normalize, pad_bottom_right, round_up, working_shape  # noqa: E402
from lang_seg_ros.objects import frame_objects  # noqa: E402
from lang_seg_ros.visualize import palette, render_overlay  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
         "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "other"]
#: Cityscapes' stuff classes (road ... sky): WORDS[:11].
STUFF = frozenset(range(11))


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def timed(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def ground_plane_depth(height: int, width: int, camera_height: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """A level camera `camera_height` m above flat ground: rows below the horizon see the ground at
    z = fy * h / (v - cy), rows above it see nothing (0 = invalid). uint16 mm and K."""
    fx = fy = 0.8 * width
    cx, cy = (width - 1) / 2, (height - 1) / 2
    rows = np.arange(height, dtype=np.float64)[:, None] - cy
    with np.errstate(divide="ignore"):
        z = np.where(rows > 0.5, fy * camera_height / rows, 0.0)
    depth_mm = np.broadcast_to(np.clip(z * 1000, 0, 65535), (height, width)).astype(np.uint16)
    return depth_mm, np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


def standard_outputs_cost(pipeline, frame, depth_mm, k, header_type, repeats: int) -> float:
    """ms the standard outputs add to a frame with depth (median of `repeats` each, summed): the
    organised points aligned with the mask (pipeline) and the confidence, aligned_points,
    detections and detections_3d messages."""
    from lang_seg_ros.objects.geometry import organised_points
    from lang_seg_ros.ros import vision_messages

    header, depth = header_type(frame_id="cam"), header_type(frame_id="depth_optical")
    inference = pipeline.infer(frame, "bgr", depth_mm, k)
    result = pipeline.finish(inference)
    regions = result.objects.regions
    t_points, points = timed(lambda: organised_points(*inference.depth_m), repeats)
    stages = [lambda: vision_messages.aligned_points_msg(points, depth),
              lambda: vision_messages.confidence_image(result.confidence, result.objects.label_map, header),
              lambda: vision_messages.detections_2d_msg(regions, header),
              lambda: vision_messages.detections_3d_msg(regions, depth)]
    return t_points + sum(timed(stage, repeats)[0] for stage in stages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default=str(ROOT.parent / "shared" / "datasets" / "camvid" / "val"))
    parser.add_argument("--max-frames", type=int, default=10)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT the frames are resized to")
    parser.add_argument("--labels", type=int, nargs="+", default=[20, 150])
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (default: one core)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    paths = sorted(glob.glob(os.path.join(args.frames, "*.png")))[: args.max_frames]
    if not paths:
        raise SystemExit(f"no PNG frames in {args.frames}")
    frames = [cv2.resize(cv2.imread(p), (width, height), interpolation=cv2.INTER_AREA) for p in paths]
    try:
        import lang_seg_ros.ros  # noqa: F401 - the generated messages on the package path
        from std_msgs.msg import Header

        from lang_seg_ros.pipeline import FramePipeline, PipelineSettings
        from lang_seg_ros.ros import outputs as messages
    except ImportError:
        messages = None
    print(f"machine: {machine()}")
    print(f"frames: {len(frames)} from {args.frames} at {width}x{height}; default model; median of "
          f"{args.repeats} runs per frame, then the median over frames (ms)")
    segmenter = Segmenter(device="cpu")
    depth_mm, k = ground_plane_depth(height, width)
    print(f"{'labels':>6} {'decide':>8} {'objects':>8} {'instances':>9} {'inst+stuff':>10} {'overlay':>8} "
          f"{'messages':>9} {'+standard':>10} {'after':>6} {'after+inst':>10} {'after+inst+stuff':>16}")
    decisions: dict[int, float] = {}
    written_decisions: dict[int, float] = {}
    factored_decisions: dict[int, float] = {}
    for count in args.labels:
        labels = (WORDS + [f"object {i}" for i in range(count)])[:count]
        prepared = segmenter.prepare(labels)
        pipeline = FramePipeline(segmenter, PipelineSettings(working_size=max(width, height))) if messages else None
        if pipeline is not None:
            pipeline.set_labels(labels)
        rows = []
        for frame in frames:
            with torch.inference_mode():
                x = normalize(frame, segmenter.model.config.mean, segmenter.model.config.std, segmenter.device, "bgr")
                h, w = working_shape(height, width, max(width, height))
                padded = pad_bottom_right(x, round_up(h), round_up(w), segmenter._fill)
                decoded = segmenter.backend.decode(padded)

                def factored():  # the head's logits computed inside the decision, block by block
                    label, confidence = decide_stride2(segmenter.backend.factor(decoded, [prepared])[0][0],
                                                       (h, w), (height, width))
                    return label.numpy(), confidence.numpy()

                def written():  # the logits written whole by the head, then decided
                    logits = segmenter.model.decoded_logits(decoded, folded=prepared.folded)[0]
                    label, confidence = decide_stride2(logits, (h, w), (height, width))
                    return label.numpy(), confidence.numpy()

                t_factored, (label_map, confidence) = timed(factored, args.repeats)
                t_written, _ = timed(written, args.repeats)
                # the Segmenter's choice (TorchBackend.factor_above_bytes: logits past the caches)
                t_decide = t_factored if segmenter.backend.factored_logits(padded, [prepared]) else t_written
            t_objects, objects = timed(lambda: frame_objects(label_map, confidence, labels, min_area=50,
                                                             max_regions=256), args.repeats)
            t_instances, _ = timed(lambda: frame_objects(label_map, confidence, labels, min_area=50, max_regions=256,
                                                         split=True), args.repeats)
            t_stuff, _ = timed(lambda: frame_objects(label_map, confidence, labels, stuff=STUFF, min_area=50,
                                                     max_regions=256, split=True), args.repeats)
            colours = palette(count)
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            t_overlay, _ = timed(lambda: render_overlay(rgb, objects.label_map, labels, colors=colours), args.repeats)
            t_messages = t_standard = float("nan")
            if pipeline is not None:
                result = pipeline.process(frame, "bgr")
                t_messages, _ = timed(lambda: messages.frame_messages(Header(frame_id="cam"), result, {}, 0.0, 1, 0),
                                      args.repeats)
                t_standard = standard_outputs_cost(pipeline, frame, depth_mm, k, Header, args.repeats)
            rows.append((t_decide, t_objects, t_instances, t_stuff, t_overlay, t_messages, t_standard, t_written,
                         t_factored))
        med = [statistics.median(column) for column in zip(*rows)]
        messages_ms = med[5] if not np.isnan(med[5]) else 0.0
        decisions[count] = med[0]
        written_decisions[count], factored_decisions[count] = med[7], med[8]
        print(f"{count:>6} {med[0]:>8.1f} {med[1]:>8.1f} {med[2]:>9.1f} {med[3]:>10.1f} {med[4]:>8.1f} {med[5]:>9.1f} "
              f"{med[6]:>10.1f} {med[1] + messages_ms:>6.1f} {med[2] + messages_ms:>10.1f} "
              f"{med[3] + messages_ms:>16.1f}")
    print("after = objects + messages (everything after the label decision), after+inst = the same with "
          "watershed instances (every label a thing), after+inst+stuff = with Cityscapes' stuff classes marked stuff")
    print("head + decision (ms), the logits written whole first / computed block by block in the decision: "
          + ", ".join(f"{count} labels {written_decisions[count]:.1f} / {factored_decisions[count]:.1f}"
                      for count in sorted(written_decisions))
          + "; `decide` is the one the Segmenter picks (TorchBackend.factor_above_bytes)")
    if len(decisions) > 1:
        base = min(decisions)
        print("label decision vs the " + f"{base}-label one: " + ", ".join(
            f"{count} labels {decisions[count] / decisions[base]:.2f}x" for count in sorted(decisions) if count != base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
