#!/usr/bin/env bash
# The test command: installs what the tests need, then runs pytest and the bats suite.
# Exit status is non-zero if anything fails (pytest's "no tests collected" counts as failure).
#   tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, when we may install them: bats (bats-core) and curl for the shell tests;
# OpenSSH (client and server) for the launcher's fake frontend on loopback (without it, as
# non-root, the ssh tests are skipped).
need=() optional=()
command -v bats >/dev/null || need+=(bats)
command -v curl >/dev/null || need+=(curl)
command -v ssh >/dev/null || optional+=(openssh-client)
[ -x /usr/sbin/sshd ] || optional+=(openssh-server)
if [ $((${#need[@]} + ${#optional[@]})) -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" "${optional[@]}" >/dev/null
elif [ ${#need[@]} -gt 0 ]; then
  echo "tests/run.sh: error: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
  exit 1
fi

# The project and its test dependencies, in a virtualenv of their own.
venv=${SEAMLESS_TEST_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,dask]'
export PATH="$PWD/$venv/bin:$PATH"
unset SEAMLESS_REMOTE_CLIENTS SEAMLESS_CACHE SEAMLESS_TOKEN_FILE

# Upstream Seamless in a throwaway virtualenv outside the repo, only as the other side of
# the compatibility tests (SEAMLESS_TEST_UPSTREAM=0 skips them).
if [ "${SEAMLESS_TEST_UPSTREAM:-1}" != 0 ] && [ -z "${SEAMLESS_UPSTREAM_VENV:-}" ]; then
  if SEAMLESS_UPSTREAM_VENV=$(bench/upstream-venv.sh); then
    export SEAMLESS_UPSTREAM_VENV
  else
    echo "tests/run.sh: warning: could not build the upstream virtualenv; compatibility tests are skipped" >&2
  fi
fi

status=0
python -m pytest -q "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "tests/run.sh: error: pytest collected no tests" >&2
fi
# a HOME of their own, like every pytest test (conftest.py): nothing that earlier runs
# or this user left in ~/.cache or ~/.seamless may change an outcome
bats_home=$(mktemp -d)
HOME="$bats_home" XDG_CACHE_HOME="$bats_home/.cache" bats tests/bats || status=$((status ? status : 1))
rm -rf "$bats_home"
exit "$status"
