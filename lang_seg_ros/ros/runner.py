"""Running a node: rclpy set-up, a single-threaded executor, clean shutdown on SIGINT / SIGTERM."""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Sequence

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl

from ..device_spec import quiet_openmp

__all__ = ["close", "free_accelerator_memory", "run"]

NODE_NAME = "lang_seg"
RCLError = _rclpy_impl.RCLError


def free_accelerator_memory() -> None:
    """Give cached GPU memory back (after a model is dropped or a frame ran out of memory)."""
    torch = sys.modules.get("torch")  # never imports torch itself
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(node_factory, args: Sequence[str] | None = None) -> int:
    """Init rclpy, spin the node until SIGINT/SIGTERM, shut down cleanly; exit code 0 then."""
    quiet_openmp()  # before torch loads
    try:
        rclpy.init(args=args)
    except RCLError as exc:  # e.g. a -p value that is not valid YAML
        print(f"{NODE_NAME}: invalid command line: {exc}", file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = node_factory()
        # One thread: rclpy's MultiThreadedExecutor re-submits callbacks still queued for its pool
        # in a busy loop that holds the GIL and starves the worker (measured: 0.1-1.4 FPS instead
        # of 15 on an idle 2-core machine). Callbacks are short; `refer` is an async callback that
        # awaits the worker without holding the executor (services.py).
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # SIGINT shut the context down while the executor was building its next wait set (two
        # signals 0.1 s apart, as `ros2 launch` sends them): a normal stop, not a crash.
        if rclpy.ok():
            raise
    except (ValueError, ParameterException) as exc:  # invalid parameters at start-up
        print(f"{NODE_NAME}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 2
    finally:
        close(node)
    busy = [t.name for t in threading.enumerate() if t.name.startswith("lang_seg") and t.is_alive()]
    if busy:
        # A model pass outlived the node's stop timeout (10 s, docs/ros.md): torch's threads would
        # abort the interpreter's finalisation (exit -6). The node is shut down; leave at once.
        print(f"{NODE_NAME}: {', '.join(busy)} still running after shutdown; exiting without waiting",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)
    return code


def _ignore_interrupts() -> None:
    """From here on SIGINT is ignored: under `ros2 launch` a terminal Ctrl-C reaches the node
    twice (from the terminal, then forwarded by launch 50-200 ms later), and the second must not
    kill it while it shuts down. An ignored signal stays ignored through interpreter finalisation
    (Python resets only handlers it installed itself to the default, which would kill with -2)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def close(node) -> None:
    """Destroy `node` (None: nothing to destroy) and shut rclpy down; further SIGINTs are ignored
    (see `_ignore_interrupts`), so the process ends with exit code 0."""
    _ignore_interrupts()
    try:
        if node is not None:
            node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            rclpy.try_shutdown()
        except KeyboardInterrupt:
            pass
        _ignore_interrupts()  # rclpy's shutdown puts back the handler it found at init


