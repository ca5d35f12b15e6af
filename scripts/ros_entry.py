#!/usr/bin/env python3
"""Executable installed by CMake as lib/lang_seg_ros/{lang_seg_ros,lang_seg_ros_lifecycle,
lang_seg_ros_replay}: dispatches on the name it was installed under (for `ros2 run`)."""
import os
import sys

if __name__ == "__main__":
    name = os.path.basename(sys.argv[0])
    if name.endswith("_lifecycle"):
        from lang_seg_ros.ros.lifecycle_node import main
    elif name.endswith("_replay"):
        from lang_seg_ros.ros.replay import main
    else:
        from lang_seg_ros.ros.node import main
    sys.exit(main())
