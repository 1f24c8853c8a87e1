#!/usr/bin/env bash
# A throwaway virtualenv with the whole upstream Seamless 1.4.3 (seamless-suite: its
# seamless-run, Python client, servers and seamless_dask 0.4) and the same dask,
# distributed and bokeh as ours, outside the repo, for bench/bench_dask.py's upstream
# side. Never a dependency of the project.
#   bench/upstream-dask-suite-venv.sh [DIR]   (default $TMPDIR/seamless-upstream-dask-suite; prints DIR)
set -euo pipefail
dir=${1:-${SEAMLESS_UPSTREAM_DASK_SUITE_VENV:-${TMPDIR:-/tmp}/seamless-upstream-dask-suite}}
if [ ! -x "$dir/bin/seamless-run" ] || [ ! -x "$dir/bin/seamless-dask-wrapper" ] \
   || ! "$dir/bin/python" -c "import seamless_dask, seamless_transformer, bokeh" 2>/dev/null; then
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q 'seamless-suite==1.4.3' 'seamless-dask==0.4.*' 'dask==2026.8.0' \
    'distributed==2026.8.0' 'bokeh>=3.1' >&2
fi
echo "$dir"
