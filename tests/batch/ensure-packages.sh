#!/usr/bin/env bash
# ensure-packages.sh LOGDIR PKG...: install the Debian packages that are missing (root
# only; the apt log goes to LOGDIR/log/apt.log). What the batch fixtures use besides
# start-*.sh, which install their own.
set -euo pipefail
PROG=ensure-packages
[ $# -ge 2 ] || { echo "usage: $0 LOGDIR PKG..." >&2; exit 2; }
DIR=$(realpath -m "$1"); shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"
mkdir -p "$DIR/log"
ensure_packages "$@"
