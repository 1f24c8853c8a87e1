#!/usr/bin/env bats
# seamless-init and seamless-run with a seamless.yaml: stages, storage, errors.

bats_require_minimum_version 1.5.0

setup() {
  cd "$BATS_TEST_TMPDIR"
  export HOME="$BATS_TEST_TMPDIR/home" XDG_CACHE_HOME="$BATS_TEST_TMPDIR/xdg"
  export SEAMLESS_LAUNCH_DIR="$BATS_TEST_TMPDIR/launch"
  unset SEAMLESS_CACHE SEAMLESS_REMOTE_CLIENTS
  mkdir -p home/.seamless work
  cat > home/.seamless/clusters.yaml <<YAML
local_cluster: laptop
laptop:
  type: local
  frontends:
    - hashserver: {bufferdir: $BATS_TEST_TMPDIR/bufs}
      database: {database_dir: $BATS_TEST_TMPDIR/dbs}
lab:
  frontends:
    - hostname: localhost
      hashserver: {bufferdir: $BATS_TEST_TMPDIR/labbufs}
      database: {database_dir: $BATS_TEST_TMPDIR/labdbs}
hpc:
  type: slurm
  queues: {normal: {cores: 4}}
  frontends:
    - hostname: login.hpc.example
      hashserver: {bufferdir: ~/bufs}
      database: {database_dir: ~/dbs}
      daskserver: {}
YAML
  cat > work/seamless.yaml <<YAML
- project: proj
- cluster: laptop
- execution: process
- stage lab:
    - cluster: lab
- stage prod:
    - cluster: hpc
    - execution: remote
YAML
  cd work
  printf 'a\nb\n' > data.txt
}

teardown() {
  seamless-launch ps --json | python3 -c 'import json, sys; [print(json.loads(l)["key"]) for l in sys.stdin]' |
    xargs -r seamless-launch stop >/dev/null
  true
}

@test "seamless-init --show prints the resolved configuration" {
  run seamless-init --show
  [ "$status" -eq 0 ]
  [[ "$output" == *"cluster     laptop  (this machine)"* ]]
  [[ "$output" == *"buffers     $BATS_TEST_TMPDIR/bufs/proj"* ]]
  run seamless-init --show --stage prod
  [[ "$output" == *"execution   remote  daskserver"* ]] && [[ "$output" == *"buffers     ~/bufs/proj/STAGE-prod"* ]]
}

@test "seamless-init on a local cluster: directory and file" {
  run seamless-init
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "buffers     $BATS_TEST_TMPDIR/bufs/proj  directory, ok" ]
  [ -f "$BATS_TEST_TMPDIR/dbs/proj/seamless.db" ]
}

@test "seamless-init starts the services of a non-local cluster on this host, then reuses them" {
  run seamless-init --stage lab
  [ "$status" -eq 0 ] && [[ "${lines[0]}" == "hashserver  http://127.0.0.1:"*"  running" ]]
  first="${lines[0]}"
  run seamless-init --stage lab
  [ "${lines[0]}" = "$first" ]
  url=$(echo "$first" | awk '{print $2}')
  token="$SEAMLESS_LAUNCH_DIR/client/hashserver-lab-rw-proj--STAGE-lab.token"
  [ "$(stat -c %a "$token")" = 600 ]
  [ "$(curl -s -H "Authorization: Bearer $(cat "$token")" "$url/healthcheck")" = OK ]
  # without the token, other local users get nothing
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/$(printf x | sha256sum | cut -c1-64)")" = 401 ]
}

@test "seamless-init: an unreachable frontend is one clear line, exit 1" {
  run --separate-stderr seamless-init --stage prod
  [ "$status" -eq 1 ]
  [[ "$stderr" == "seamless-init: error: cannot ssh to login.hpc.example: "* ]]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
}

@test "seamless-init exits 0 at once with SEAMLESS_REMOTE_CLIENTS" {
  SEAMLESS_REMOTE_CLIENTS='{"buffer": []}' run --separate-stderr seamless-init
  [ "$status" -eq 0 ] && [ -z "$output" ]
}

@test "an invalid file: one line with the file, the entry and the fix" {
  echo "- clustr: laptop" >> seamless.yaml
  run --separate-stderr seamless-init
  [ "$status" -eq 1 ]
  [ "$stderr" = "seamless-init: error: $PWD/seamless.yaml: entry 6: unknown command 'clustr'; did you mean 'cluster'?" ]
  run --separate-stderr seamless-run echo hi
  [ "$status" -eq 1 ] && [[ "$stderr" == *"did you mean 'cluster'?"* ]]
}

@test "seamless-run keeps results in the stage's storage" {
  run seamless-run 'cat data.txt'
  [ "$status" -eq 0 ] && [ "$output" = $'a\nb' ]
  [ -f "$BATS_TEST_TMPDIR/dbs/proj/seamless.db" ]
  run seamless-run --stage lab 'cat data.txt'
  [ "$status" -eq 0 ] && [ "$output" = $'a\nb' ]
  [ -d "$BATS_TEST_TMPDIR/labbufs/proj/STAGE-lab" ]
  run --separate-stderr seamless-run -v --stage lab 'cat data.txt'
  [[ "$stderr" == *"cache hit"* ]]
}

@test "seamless-run --project overrides the project" {
  run seamless-run --project other 'cat data.txt'
  [ "$status" -eq 0 ] && [ -d "$BATS_TEST_TMPDIR/bufs/other" ]
}

@test "seamless-run on a cluster it cannot reach: one line naming the frontend, --local too" {
  run --separate-stderr seamless-run --stage prod 'cat data.txt'
  [ "$status" -eq 1 ] && [[ "$stderr" == *"login.hpc.example"* ]] && [ "${#stderr_lines[@]}" -eq 1 ]
  run --separate-stderr seamless-run --local --stage prod 'cat data.txt'
  [ "$status" -eq 1 ] && [[ "$stderr" == *"login.hpc.example"* ]]
}

@test "seamless-run --queue is checked against the cluster" {
  run --separate-stderr seamless-run --stage prod --queue nope --local echo hi
  [ "$status" -eq 1 ] && [[ "$stderr" == *"has no queue 'nope'"* ]]
}
