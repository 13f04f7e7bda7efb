#!/usr/bin/env bash
# Set up a fresh machine for warmloop: system libraries for headless rendering, a
# virtual environment in .venv, the right torch build, then the project itself.
# Idempotent: `make` only calls it when pyproject.toml changed (see the stamp in Makefile).
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP=${1:?usage: bootstrap.sh STAMP_FILE}

log() { printf '[bootstrap] %s\n' "$*"; }

# --- system libraries ------------------------------------------------------------
# MuJoCo renders headless through EGL (Mesa); Open3D needs libusb to import and Vulkan
# (lavapipe on a CPU) for its offscreen renderer.
missing_system_packages() {
    local missing=()
    ldconfig -p | grep -q 'libEGL.so.1' || missing+=(libegl1 libgl1-mesa-dri)
    ldconfig -p | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
    ldconfig -p | grep -q 'libvulkan.so.1' || missing+=(libvulkan1)
    ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
    echo "${missing[@]:-}"
}

packages=$(missing_system_packages)
if [ -n "$packages" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing system packages: $packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    else
        log "missing system packages for headless rendering: $packages"
        log "run:  sudo apt-get install -y $packages"
    fi
fi

# --- virtual environment -----------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip

# --- torch: CPU build where there is no NVIDIA GPU --------------------------------
# A plain `torch` requirement resolves to a multi-GB CUDA build on Linux; on a machine
# without a GPU we install the CPU build first, so pyproject's `torch>=2.4` is already met.
if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    log "torch already installed: $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    log "NVIDIA GPU found: installing a CUDA build of torch"
    pip install -q 'torch>=2.4'
else
    log "no NVIDIA GPU: installing a CPU build of torch"
    pip install -q 'torch==2.13.0' 2>/dev/null \
        || pip install -q 'torch>=2.4,<2.14' --index-url https://download.pytorch.org/whl/cpu
fi

# --- the project -------------------------------------------------------------------
log "installing warmloop and its dependencies"
pip install -q -e '.[all,dev]'

rm -f "$VENV"/.stamp-*
touch "$STAMP"
log "done"
