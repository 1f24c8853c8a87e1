#!/usr/bin/env bash
# A throwaway virtualenv with upstream's seamless-dask-wrapper (seamless_dask 0.4) and the
# same dask, distributed and dask_jobqueue releases as ours, outside the repo, for
# bench/bench_dask_wrapper.py and tests/compat/make_dask_vectors.py. Never a dependency.
#   bench/upstream-dask-venv.sh [DIR]     (default $TMPDIR/seamless-upstream-dask; prints DIR)
set -euo pipefail
dir=${1:-${SEAMLESS_UPSTREAM_DASK_VENV:-${TMPDIR:-/tmp}/seamless-upstream-dask}}
if [ ! -x "$dir/bin/seamless-dask-wrapper" ]; then
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q 'seamless-dask==0.4.*' 'dask==2026.8.0' 'distributed==2026.8.0' \
    'dask-jobqueue==0.9.0' 'bokeh>=3.1' >&2
fi
echo "$dir"
