"""The managed (lifecycle) variant of the lang_seg_ros node.

    ros2 run lang_seg_ros lang_seg_ros_lifecycle --ros-args -p autostart:=false
    python -m lang_seg_ros.ros.lifecycle_node

Transitions: configure creates the topics and services and loads the model (a failure to load
fails the transition); activate starts segmenting; deactivate stops (frames are ignored,
outputs stop); cleanup and shutdown free the model and the accelerator memory. With
`autostart` true (the default) the node configures and activates itself at start-up.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .node import NODE_NAME, _SegmentationMixin, run
from .parameters import Param

__all__ = ["SegmentationLifecycleNode", "main"]

LIFECYCLE_PARAMETERS = (
    Param("autostart", True, "Lifecycle executable only: configure and activate at start-up.", read_only=True),
)


class SegmentationLifecycleNode(_SegmentationMixin, LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        LifecycleNode.__init__(self, node_name, **kwargs)
        self._init_state()
        self._declare_parameters(LIFECYCLE_PARAMETERS)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._create_interfaces()
            if self._load_model():
                self._worker.cancel_reload()  # loaded with the current parameters
                return TransitionCallbackReturn.SUCCESS
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it without a word
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
        self._destroy_interfaces()
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        self._start_threads()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_threads()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self._active = False
        self._stop_threads()
        self._destroy_interfaces()
        self._unload_model()

    def autostart(self) -> None:
        if self._settings.get("autostart"):
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    def destroy_node(self) -> None:
        self._active = False
        self._stop_threads()
        super().destroy_node()


def _make_node() -> SegmentationLifecycleNode:
    node = SegmentationLifecycleNode()
    node.autostart()
    return node


def main(args: Sequence[str] | None = None) -> int:
    return run(_make_node, args)


if __name__ == "__main__":
    sys.exit(main())
