#!/usr/bin/env bash
# One-command setup (the README's `setup` line; CI runs it on a fresh machine):
#   1. the native runner's system packages (CMake, g++, OpenCV and nlohmann-json headers), from Debian's
#      packages via apt-get when they are missing;
#   2. the Python project with its dev extras (CPU torch 2.13.0, executorch 1.5.1, ...);
#   3. the native C++ runner (runtime/native) into build/native.
# ESAM3_SKIP_NATIVE=1 skips steps 1 and 3 (machines without apt, or without a use for the C++ runner).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"

APT_PACKAGES=(cmake g++ libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
              libopencv-videoio-dev nlohmann-json3-dev)

native_packages_missing() {
  command -v cmake >/dev/null && command -v g++ >/dev/null || return 0
  for header in opencv4/opencv2/core.hpp opencv4/opencv2/imgproc.hpp opencv4/opencv2/imgcodecs.hpp \
                opencv4/opencv2/videoio.hpp nlohmann/json.hpp; do
    [[ -f "/usr/include/$header" || -f "/usr/local/include/$header" ]] || return 0
  done
  return 1
}

if [[ "${ESAM3_SKIP_NATIVE:-0}" != 1 ]] && native_packages_missing; then
  if ! command -v apt-get >/dev/null; then
    echo "setup: the native runner needs ${APT_PACKAGES[*]} (no apt-get here: install them, or set ESAM3_SKIP_NATIVE=1)" >&2
    exit 1
  fi
  SUDO=""
  [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  echo "setup: installing ${APT_PACKAGES[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

"$PYTHON" -m pip install -e ".[dev]"

if [[ "${ESAM3_SKIP_NATIVE:-0}" != 1 ]]; then
  cmake -S runtime/native -B build/native -DCMAKE_BUILD_TYPE=Release -DESAM3_PYTHON="$(command -v "$PYTHON")"
  cmake --build build/native -j"$(nproc)"
fi
