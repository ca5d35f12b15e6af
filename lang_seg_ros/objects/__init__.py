"""Object-level results from a label map (numpy, OpenCV, SciPy; no ROS, no torch at import).

- `regions`: connected components per label (`Region`, `extract_regions`).
- `instances`: watershed instances and mask-pooling classification (after PADing, arXiv 2306.11087).
- `panoptic`: panoptic id images, (label + 1) * 1000 + instance.
- `geometry`: depth, intrinsics and 3D summaries of regions.
- `tracking`: track ids across frames by mask IoU.
- `frame`: all of the above for one frame, as the frame pipeline and the node use them.
"""
from .frame import FrameObjects, FrameRegion, add_geometry, aligned_depth, best_overlap, frame_objects, labelled_points
from .regions import Region, extract_regions

__all__ = ["FrameObjects", "FrameRegion", "Region", "add_geometry", "aligned_depth", "best_overlap",
           "extract_regions", "frame_objects", "labelled_points"]
