#!/usr/bin/env bash
# Idempotent setup: a virtual environment in .venv with the pinned requirements,
# and (with --dev) the test tools plus Debian's chromium for the browser tests.
# A second run only checks that nothing changed, so it takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
req=requirements.txt
[ $dev = 1 ] && req=requirements-dev.txt

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi

stamp=.venv/.installed-$(basename "$req" .txt)
want=$(cat requirements*.txt | sha256sum | cut -d" " -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing $req (the first time, llama-cpp-python compiles from source: ~7-10 min on 2 cores)"
  export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
  .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
  .venv/bin/python -m pip install --disable-pip-version-check -q -r "$req"
  echo "$want" > "$stamp"
fi

# llama.cpp is compiled for the CPU it is built on, and pip may reuse a wheel built on another machine: a
# forward pass of the bundled model in a worker process shows whether it runs here (a few seconds, each run).
smoke=.venv/.llama-smoke
cpu=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -d" " -f1)
if [ "$(cat "$smoke" 2>/dev/null)" != "$want-$cpu" ]; then
  if ! .venv/bin/python -m lib.local_worker --smoke; then
    echo "setup: llama.cpp does not run on this CPU; rebuilding llama-cpp-python from source for it (~10 min)"
    export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
    llama=$(grep -m1 '^llama-cpp-python==' requirements.txt)
    .venv/bin/python -m pip install --disable-pip-version-check -q --force-reinstall --no-deps --no-cache-dir \
      --no-binary llama-cpp-python "$llama"
    if ! .venv/bin/python -m lib.local_worker --smoke; then
      echo "setup: llama.cpp still does not run on this CPU. See README, 'The local model', for what to try." >&2
      exit 1
    fi
  fi
  echo "$want-$cpu" > "$smoke"
fi

if [ $dev = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium for the browser tests"
  SUDO=""
  [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "setup: ready"
