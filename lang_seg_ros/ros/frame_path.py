"""What the node's threads do with frames: the worker loads the model, brings the pipeline up
to date with the parameters, label set and expression, decodes every camera's newest frame and
runs the model once per frame size, frames of several cameras in one batch (`_process_round`);
the rest of each frame (`_finish`: objects, referring) and its messages (`_publish`), then its
overlay, follow on the finisher thread with `overlap_postprocessing`, else right after on the
worker. `refer` requests are answered on the worker between frames.

A mixin of the node (`node.py`), which owns the state it reads: settings and commands are
swapped in one assignment by the executor thread, counters are guarded by `_lock`.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import rclpy
from std_msgs.msg import Header

from ..weights import EMBEDDED_MODELS, embedded_model_file
from . import messages
from .depth import DepthFrame, stamp_ns
from .image_conversion import ImageConversionError, decode_frame
from .outputs import REGION_TOPICS
from .parameters import build_pipeline, pipeline_settings
from .runner import free_accelerator_memory
from .worker import Job

__all__ = ["BATCH_PIXELS", "FramePath"]

#: Input pixels of one batched model pass over several cameras' frames (four 1920x1080 frames):
#: more frames of that size go through further passes.
BATCH_PIXELS = 4 * 1920 * 1080


class FramePath:
    """The worker- and finisher-thread half of the node (see the module doc)."""

    # -- model (worker thread) ------------------------------------------------------------------
    def _load_model(self) -> bool:
        """Build the model and pipeline from the current parameters; on failure keep the old ones."""
        s, t0 = self._settings, time.perf_counter()
        on_worker = self._worker.on_thread
        if on_worker:  # frames of the old model still being finished go out first, in order
            self._finisher.drain()
        import torch

        from ..model.device import cpu_cores

        if self._torch_threads is None:  # before any cpu_threads: what cpu_threads 0 means
            self._torch_threads = torch.get_num_threads()
        try:
            pipeline = build_pipeline(s, self._torch_threads)
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint must not kill the node
            keep = " (keeping the previous model)" if self._pipeline is not None else ""
            self._model_error = str(exc)
            self.get_logger().error(self._model_error + keep)
            return False
        if on_worker and self._worker.stopping:  # stopped (e.g. cleaned up) while loading: not wanted
            return False
        pipeline.adopt(self._pipeline)  # track ids and the frame `refer` answers on carry over
        self._pipeline, self._model_error = pipeline, None
        # The finisher needs a core the model does not use: a GPU's host thread leaves them all, a
        # CPU model when cpu_threads is set below the core count (torch's own default may be the
        # physical cores of a hyperthreaded CPU: left as it was, measured on no such machine).
        threads, cores = torch.get_num_threads(), cpu_cores()
        on_cpu = pipeline.segmenter.device.type == "cpu"
        spare_core = 0 < s["cpu_threads"] < cores
        overlap = s["overlap_postprocessing"]
        self._overlap = overlap == "on" or (overlap == "auto" and (not on_cpu or spare_core))
        free_accelerator_memory()
        self.get_logger().info(
            f"model loaded from {_model_source(s['checkpoint'])} on {pipeline.segmenter.device} "
            f"({pipeline.segmenter.precision}, backend {s['backend']}"
            + (f", {threads} CPU thread{'s' if threads > 1 else ''} of {cores} core{'s' if cores > 1 else ''}"
               if on_cpu else "")
            + f") in {time.perf_counter() - t0:.1f} s" + (f", warmed up for {s['warmup_sizes']}"
                                                          if s["warmup_sizes"].strip() else "")
            + ("; frames are finished on a second thread (overlap_postprocessing)" if self._overlap else ""))
        return True

    def _unload_model(self) -> None:
        self._pipeline = None
        free_accelerator_memory()

    def _sync_pipeline(self) -> Any:
        """The pipeline with the current settings, label set and expression (worker thread)."""
        pipeline = self._pipeline
        s = self._settings
        spec, label_set_id, expression = self._commands.snapshot()
        # The overlay, obstacle and aligned points are computed only while someone subscribes (as
        # image_transport's lazy publishers do): the dearest outputs after the model, often unwatched.
        lazy = tuple(any(flags) for flags in zip(*(c.outputs.lazy(s) for c in self._cameras if c.outputs is not None)))
        lazy = lazy or (False, False, False)  # (overlay, obstacles, aligned points): any camera's subscriber
        applied = self._applied  # (pipeline, settings dict, lazy outputs): a new dict on every change
        if applied is None or applied[0] is not pipeline or applied[1] is not s or applied[2] != lazy:
            pipeline.configure(replace(pipeline_settings(s), overlay=lazy[0], obstacles=lazy[1], aligned_points=lazy[2]))
            was = applied[2] if applied is not None else (False, False, False)
            for name, before, now in zip(("overlay", "obstacles", "aligned_points"), was, lazy):
                if before != now:  # a viewer came or went: say so once, not per frame
                    self.get_logger().info(f"{name}: " + ("computed for its subscribers" if now else
                                                          "no longer computed (no subscriber, or switched off)"))
            self._applied = (pipeline, s, lazy)
            for name, what in (("mask_pooling", "regions are classified by pixel votes"),
                               ("region_embeddings", "regions carry no embeddings")):
                if s[name] and (pipeline.settings.scales is not None or not pipeline.segmenter.supports_features):
                    self._throttle("info", name, f"{name} needs single-scale inference (scales: [1.0]) on the torch "
                                   f"backend; {what}")
        if pipeline.labels is None or pipeline.labels.id != label_set_id:
            pipeline.set_labels(spec, label_set_id=label_set_id)
            from ..model.grounding import grounded, wordnet_missing  # torch is loaded by now

            text_config = pipeline.segmenter.model.config.text_encoder
            read = grounded(text_config, spec.labels)
            self.get_logger().info(f"labels encoded (set {label_set_id}): {', '.join(spec.labels)}"
                                   + (f"; read through WordNet: {'; '.join(map(str, read))}" if read else ""))
            if wordnet_missing(text_config):
                self._throttle("warning", "wordnet", "WordNet is not installed (apt-get install wordnet-base): labels "
                               "the model never trained on are encoded as they are (~20 mIoU lower on unseen wordings)")
        if pipeline.expression != expression:
            pipeline.set_expression(expression)
        return pipeline

    # -- per frame (worker thread) --------------------------------------------------------------
    def _process_round(self, items: list[tuple[Any, ...]]) -> None:
        """Every camera's newest waiting frame (`_on_frame`'s items): decoded, then the frames of
        one size in one batched model pass, then each finished and published on its camera."""
        frames = [frame for frame in (self._decode(*item) for item in items) if frame is not None]
        if not frames:
            return
        if self._pipeline is None:
            why = "no model loaded" + (f" ({self._model_error})" if self._model_error else " yet")
            for camera, header, *_ in frames:
                self._throttle("warning", "no_model", f"{camera.describe(self._frame_name(header))} ignored: {why}",
                               key=why)
            return
        try:
            pipeline = self._sync_pipeline()
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory encoding labels
            return self._model_failed([f[0] for f in frames], exc, [self._frame_name(f[1]) for f in frames])
        sizes: dict[tuple[int, int], list] = {}
        for frame in frames:
            sizes.setdefault(frame[2].shape[:2], []).append(frame)
        for (height, width), group in sizes.items():
            # a pass holds the frames as float tensors at full size before resizing: bounded
            per_pass = max(1, BATCH_PIXELS // max(1, height * width))
            for start in range(0, len(group), per_pass):
                self._infer_group(pipeline, group[start:start + per_pass])

    def _decode(self, camera: Any, data: bytes, compressed: bool, depth_hint: Any = None,
                t_offered: float | None = None) -> tuple[Any, ...] | None:
        """(camera, header, image, colour order, depth, timings) of one frame, or None when refused."""
        s = self._settings
        t0 = time.perf_counter()
        waited = {"wait": (t0 - t_offered) * 1e3} if t_offered is not None else {}  # in the slot, for the model
        try:
            header, image, color_order = decode_frame(data, compressed, s["max_image_pixels"])
        except ImageConversionError as exc:
            self._count(camera, "rejected")
            # throttled on the reason, without the frame's stamp: a flood of one bad image logs once
            reason = exc.__cause__ if isinstance(exc.__cause__, ImageConversionError) else exc
            topic = camera.topic("image/compressed" if compressed else "image")
            return self._refuse("bad_image", str(exc) if not camera.name else f"camera {camera.name}: {exc}", topic,
                                key=f"{camera.name}:{reason}" if camera.name else str(reason))
        depth = None
        if s["use_depth"] and self._pipeline is not None:
            depth = self._depth_for(camera, header, depth_hint, camera.describe(self._frame_name(header)))
        return camera, header, image, color_order, depth, {**waited, "decode": (time.perf_counter() - t0) * 1e3}

    @staticmethod
    def _frame_name(header: Header) -> str:
        return f"frame {header.stamp.sec}.{header.stamp.nanosec:09d} ({header.frame_id or 'no frame_id'})"

    def _infer_group(self, pipeline: Any, group: list[tuple[Any, ...]]) -> None:
        """Frames of one size: depth aligned per frame, one model pass for all, then each finished."""
        from ..pipeline import DepthError  # loaded with the model (torch), never at node import
        depths_m = []
        for i, (camera, header, image, color_order, depth, timings) in enumerate(group):
            t0 = time.perf_counter()
            try:
                depths_m.append(pipeline.align_depth(image.shape[:2], *((depth.values, depth.k, depth.k_shape)
                                                                         if depth is not None else (None, None))))
            except DepthError as exc:  # the frame without 3D
                frame = camera.describe(self._frame_name(header))
                self._throttle("warning", "bad_depth", f"{frame}: {exc}: no 3D for it", key=str(exc))
                group[i] = (camera, header, image, color_order, None, timings)
                depths_m.append(None)
            if depths_m[-1] is not None:
                timings["depth"] = (time.perf_counter() - t0) * 1e3
        try:
            inferences = pipeline.infer_batch([f[2] for f in group], [f[3] for f in group], depths_m,
                                              [(f[1], f[4].header.frame_id if f[4] is not None else "") for f in group])
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: skip the frames
            return self._model_failed([f[0] for f in group], exc, [self._frame_name(f[1]) for f in group])
        if self._worker.stopping or not self._active:
            return
        for (camera, header, _, _, depth, timings), inference in zip(group, inferences):
            item = (camera, pipeline, header, inference, depth, timings, time.perf_counter())
            if self._overlap:
                self._finisher.put(item)
            else:
                self._finish(item)

    def _model_failed(self, cameras: list[Any], exc: BaseException, frames: list[str]) -> None:
        for camera in cameras:
            self._count(camera, "model_errors")
        free_accelerator_memory()
        why = f"the model failed: {type(exc).__name__}: {exc}"
        for camera, frame in zip(cameras, frames):
            self._throttle("error", "model_error", f"{camera.describe(frame)} skipped, {why}", key=why)

    def _finish(self, item: tuple[Any, ...]) -> None:
        """The rest of the frame after the model, then its messages (on the finisher thread with
        `overlap_postprocessing`, else right after the model on the worker): what robots read
        first, the overlay for people after them (rendering it, 1.5 ms at 480x360 and 14 ms at
        1920x1080 on one core, no longer delays the masks)."""
        camera, pipeline, header, inference, depth, timings, t_handed = item
        timings["handoff"] = (time.perf_counter() - t_handed) * 1e3  # waited for the previous frame's publishing
        if camera.tracks is None:
            from ..pipeline import Tracks
            camera.tracks = Tracks()
        outputs = camera.outputs
        # Regions only for someone who reads them (decided here, just before publishing: a
        # subscriber that arrives later sees the next frame): a costmap reading `label_mask` alone
        # does not pay for them (480x360, one core: ~3.5 ms a frame and the segmentation message)
        regions = outputs is None or outputs.wants_regions(self._settings)
        if regions != camera.regions:
            if camera.regions is not None:  # a reader came or went: said once, not per frame
                self.get_logger().info(camera.describe("regions: ") + (
                    "computed for their readers" if regions else
                    f"no longer computed (no subscriber of {', '.join(REGION_TOPICS)})"))
            camera.regions = regions
        result = pipeline.finish(inference, camera.tracks, overlay=False, regions=regions)
        if result.referring_error:
            self._refuse("bad_expression", result.referring_error, "referring_expression")
        if not self._active or outputs is None:
            return
        latency_ms, processing_ms = self._publish(camera, outputs, header, result, depth, timings)
        if self._active and outputs.subscribed("overlay"):  # this camera's viewer; a deactivate may have begun
            processing_ms += self._publish_overlay(outputs, header, pipeline, inference, result)
        with self._lock:  # the frame counts as processed after both
            done = (time.monotonic(), latency_ms, processing_ms)
            for stats in {id(camera.stats): camera.stats, id(self._stats): self._stats}.values():
                stats.processed += 1
                stats.window.append(done)

    def _publish(self, camera: Any, outputs: Any, header: Header, result: Any, depth: DepthFrame | None,
                 timings: dict[str, float]) -> tuple[float, float]:
        """The frame's messages on `outputs` (the camera's); returns (latency ms from the frame's
        stamp to publishing, processing ms: the frame's stages but its waits)."""
        with self._lock:
            camera.sequence += 1
            sequence, dropped, camera_info = camera.sequence, camera.stats.dropped, camera.camera_info
        latency_ms = self._latency_ms(header.stamp)
        stages = {**timings, **result.timings_ms}
        publish_ms = outputs.publish_frame(
            header, result, stages, latency_ms, sequence, dropped,
            depth.header if depth is not None and result.has_depth else None, camera_info, self._settings)
        return latency_ms, publish_ms + sum(ms for stage, ms in stages.items() if stage not in ("wait", "handoff"))

    def _publish_overlay(self, outputs: Any, header: Header, pipeline: Any, inference: Any, result: Any) -> float:
        """The frame's overlay, drawn and published after its other messages when the frame's
        settings want one (`publish_overlay`, a viewer); returns the ms it took (0: none)."""
        t0 = time.perf_counter()
        try:
            pipeline.add_overlay(inference, result)
            if result.overlay is None:
                return 0.0
            outputs.publish_overlay(header, result.overlay)
        except Exception as exc:  # noqa: BLE001 - the frame is out; a failed picture must not un-count it
            self._throttle("warning", "overlay", f"overlay not drawn: {type(exc).__name__}: {exc}")
        return (time.perf_counter() - t0) * 1e3

    def _refuse(self, kind: str, text: str, topic: str | None = None, sent: str | list[str] | None = None,
                key: str | None = None) -> None:
        """A refused input: a warning, throttled per distinct message (`key`, default `text`); when
        it came from a topic (no response to tell the sender), also on the latched `status` topic."""
        held = self._throttle("warning", kind, text, key=key)
        outputs = self._outputs
        if held is not None and topic is not None and outputs is not None:
            outputs.publish_refusal(self.get_fully_qualified_name(), topic, kind, text, sent,
                                    self.get_clock().now().nanoseconds, held)

    def _answer_refer(self, job: Job) -> None:
        """Worker thread: one `refer` request on the latest processed frame."""
        expression = job.payload
        if self._pipeline is None:
            return job.finish((False, "no model loaded" + (f" ({self._model_error})" if self._model_error else " yet"),
                               None))
        try:
            answer = self._sync_pipeline().refer(expression)
        except (RuntimeError, ValueError) as exc:  # no frame yet / refused expression
            return job.finish((False, str(exc), None))
        header, frame_id_3d = answer.tag
        job.finish((True, answer.result.reason, messages.referring_msg(
            header, answer.expression, answer.query, answer.result, answer.region, frame_id_3d)))

    def _on_worker_error(self, exc: BaseException, job: Job | None) -> None:
        if job is not None:
            with self._lock:
                self._stats.model_errors += 1
            free_accelerator_memory()
            job.finish((False, f"the model failed: {type(exc).__name__}: {exc}", None))
        elif rclpy.ok(context=self.context):
            self._throttle("error", "internal", f"frame skipped: {type(exc).__name__}: {exc}")

    def _depth_for(self, camera: Any, header: Header, hint: Any, frame: str) -> DepthFrame | None:
        s = self._settings
        with self._lock:
            fallback = camera.camera_info
        depth, kind, why = camera.depth.match(header, hint, s["depth_slop"], s["max_image_pixels"], fallback,
                                              self._worker.wait, lambda: self._worker.stopping)
        if depth is None:
            self._throttle("warning", kind, f"{frame}: {why}: no 3D for it", key=why)
        return depth

    def _latency_ms(self, stamp) -> float:
        stamp = stamp_ns(stamp)
        return (self.get_clock().now().nanoseconds - stamp) / 1e6 if stamp > 0 else float("nan")


def _model_source(checkpoint: str) -> str:
    """What the log says a model was loaded from: the path, or an embedded model's name and file."""
    if not checkpoint:
        return "the embedded default"
    return f"{checkpoint} ({embedded_model_file(checkpoint).name})" if checkpoint in EMBEDDED_MODELS else checkpoint
