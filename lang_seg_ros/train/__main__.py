"""``python -m lang_seg_ros.train CONFIG [options]``: ``lang-seg train`` as a module, so that
``torchrun`` can start it once per process (it runs modules, not console scripts)::

    torchrun --nproc_per_node 2 -m lang_seg_ros.train configs/train/camvid_v2_wordings.yaml --out-dir DIR

One process (plain ``python -m``) trains exactly as ``lang-seg train`` does.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .commands import add_train_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lang_seg_ros.train", description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
