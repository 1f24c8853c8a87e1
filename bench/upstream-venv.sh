#!/usr/bin/env bash
# Create a throwaway virtualenv with upstream Seamless servers and client, outside the
# repo, so the benchmarks can run them side by side with ours and the compatibility
# tests (tests/test_upstream_compat.py) can run them against ours. Upstream is never a
# dependency of the project.
#   bench/upstream-venv.sh [DIR]     (default $TMPDIR/seamless-upstream; prints DIR)
set -euo pipefail
dir=${1:-${SEAMLESS_UPSTREAM_VENV:-${TMPDIR:-/tmp}/seamless-upstream}}
if [ ! -x "$dir/bin/seamless-run" ] || [ ! -x "$dir/bin/seamless-jobserver" ] || ! "$dir/bin/python" -c "import seamless_remote" 2>/dev/null; then
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q hashserver==1.1.0 seamless-database==2.1.0 seamless-remote==0.4.0 \
    seamless-config==0.3.2 seamless-transformer==0.6.1 remote-http-launcher==0.4.5 seamless-jobserver==0.3.0 >&2
fi
echo "$dir"
