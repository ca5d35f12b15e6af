"""Running a node: rclpy set-up, a two-thread executor, clean shutdown on SIGINT / SIGTERM."""
from __future__ import annotations

import os
import sys
from typing import Sequence

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl

__all__ = ["free_accelerator_memory", "run"]

NODE_NAME = "lang_seg"
RCLError = _rclpy_impl.RCLError


def free_accelerator_memory() -> None:
    """Give cached GPU memory back (after a model is dropped or a frame ran out of memory)."""
    torch = sys.modules.get("torch")  # never imports torch itself
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(node_factory, args: Sequence[str] | None = None) -> int:
    """Init rclpy, spin the node until SIGINT/SIGTERM, shut down cleanly; exit code 0 then."""
    # OpenMP threads that spin while waiting (libgomp's default) slow torch down many-fold when
    # the CPU is shared with other busy processes, as on a robot; must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        rclpy.init(args=args)
    except RCLError as exc:  # e.g. a -p value that is not valid YAML
        print(f"{NODE_NAME}: invalid command line: {exc}", file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = node_factory()
        # Two threads: the `refer` service (own callback group) waits for the worker while the
        # other callbacks, all in the node's default mutually exclusive group, keep running.
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException) as exc:  # invalid parameters at start-up
        print(f"{NODE_NAME}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 2
    finally:
        try:
            if node is not None:
                node.destroy_node()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            rclpy.try_shutdown()
    return code


