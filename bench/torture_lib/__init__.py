"""The torture harness behind `bench/torture.py` (its docstring tells what a run does and checks),
one module per concern:

- `messages.py`: the inputs: every message a run sends (valid, odd and malformed frames, bombs,
  depth, CameraInfos, label sets, referring expressions) and the checkpoints for the swaps.
- `nodes.py`: the node processes: starting them, their publishers, service clients and output
  subscriptions, their RSS.
- `sending.py`: sending: publishing and calling services with the bookkeeping the checks need
  (which stamps are valid or malformed, which label sets were sent), bad parameter values.
- `invariants.py`: the checks on every output of the node, and the verdicts reported.
- `runner.py`: `Options` and `Torture`, the driver: its phases (start-up, baseline, fuzz, flood,
  soak, end).
- `report.py`: `Report` and `NodeReport` (summary, JSON), the soak CSV, RSS slope and plot.

Importing the package puts `test/ros` on the path: its `harness.py` starts the node as the ROS
tests do, and sets this run's own ROS_DOMAIN_ID, localhost discovery and the Fast DDS profile.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "test" / "ros"))
