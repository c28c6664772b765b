#!/usr/bin/env bash
# The GPU check on a machine that has Python, jax, flax and optax but not the rest of the
# project's dependencies, and no network (docs/benchmarks.md, "GPU check").
#
#   bash benchmarks/gpu_check.sh --fetch-wheels   # here, with network: fill wheels/
#   bash benchmarks/gpu_check.sh [gpu_check.py arguments]   # there, with wheels/ carried
#
# The numerical core needs pydantic and pydantic-settings (the model specs, the settings) and
# nothing else outside that machine's set: where they are missing they are installed from
# wheels/ (no index, no network) into .gpu-deps/, put first on PYTHONPATH for this run only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEPS=${GOLDILOCKS_GPU_DEPS:-$PWD/.gpu-deps}
# Pinned as in constraints.txt; the GPU machine runs CPython 3.12 on x86-64 Linux.
WHEELS="pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
typing-extensions==4.16.0 annotated-types==0.8.0 typing-inspection==0.4.5"

if [ "${1:-}" = "--fetch-wheels" ]; then
  "$PY" -m pip download --only-binary=:all: --no-deps --python-version "${WHEEL_PYTHON:-3.12}" \
    --platform manylinux2014_x86_64 -d wheels $WHEELS
  exit 0
fi

if [ -n "${GOLDILOCKS_FORCE_WHEELS:-}" ] || ! "$PY" -c "import pydantic, pydantic_settings" 2>/dev/null; then
  if ! ls wheels/*.whl >/dev/null 2>&1; then
    echo "gpu_check.sh: pydantic is missing here and wheels/ is empty: run" \
      "'bash benchmarks/gpu_check.sh --fetch-wheels' on a machine with network, carry wheels/" >&2
    exit 2
  fi
  mkdir -p "$DEPS"
  if ! "$PY" -m pip install --quiet --no-index --no-deps --find-links wheels --target "$DEPS" \
      --upgrade wheels/*.whl 2>/dev/null; then
    # No pip: a wheel is a zip of the package folders, ready to import once unpacked.
    for w in wheels/*.whl; do "$PY" -m zipfile -e "$w" "$DEPS"; done
  fi
  export PYTHONPATH="$DEPS${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" benchmarks/gpu_check.py "$@"
