#!/usr/bin/env bats
# seamless-hashserver and seamless-db from the shell: start, answer, errors, signals.

bats_require_minimum_version 1.5.0

setup() {
  cd "$BATS_TEST_TMPDIR"
  mkdir -p buffers
}

teardown() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
}

start() {  # start a server in the background; sets $pid and $url
  "$@" --port 0 > url.txt 2> err.txt &
  pid=$!
  for _ in $(seq 1 100); do
    url=$(head -1 url.txt 2>/dev/null || true)
    [ -n "$url" ] && return 0
    sleep 0.05
  done
  cat err.txt >&2
  return 1
}

@test "hashserver: PUT, GET, has with curl" {
  start seamless-hashserver buffers --writable
  cs=$(printf hello | sha256sum | cut -c1-64)
  [ "$(curl -s -X PUT --data-binary hello "$url/$cs")" = "OK" ]
  [ "$(curl -s "$url/$cs")" = "hello" ]
  [ "$(curl -s -X GET -d "[\"$cs\"]" "$url/has")" = "[true]" ]
  [ -f "buffers/${cs:0:2}/$cs" ]
}

@test "hashserver binds 127.0.0.1 by default" {
  start seamless-hashserver buffers
  [[ "$url" == http://127.0.0.1:* ]]
}

@test "hashserver: missing directory is one line, exit 1" {
  run --separate-stderr seamless-hashserver nowhere
  [ "$status" -eq 1 ]
  [ "$stderr" = "seamless-hashserver: error: buffer directory nowhere does not exist (create it first)" ]
}

@test "hashserver: --port with --port-range is a usage error (exit 2)" {
  run seamless-hashserver buffers --port 1 --port-range 2 3
  [ "$status" -eq 2 ]
}

@test "hashserver: a busy port is one line, exit 1" {
  start seamless-hashserver buffers
  port=${url##*:}
  run --separate-stderr seamless-hashserver buffers --port "$port"
  [ "$status" -eq 1 ]
  [[ "$stderr" == "seamless-hashserver: error: cannot listen on 127.0.0.1:$port"* ]]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
}

@test "hashserver: SIGTERM exits 0, SIGINT exits 130" {
  start seamless-hashserver buffers
  kill -TERM "$pid"
  code=0; wait "$pid" || code=$?
  [ "$code" -eq 0 ]
  start seamless-hashserver buffers
  kill -INT "$pid"
  code=0; wait "$pid" || code=$?
  [ "$code" -eq 130 ]
  pid=
}

@test "hashserver: --token-file requires the bearer token (any case), except for /healthcheck" {
  echo tok > token
  start seamless-hashserver buffers --token-file token
  cs=$(printf hello | sha256sum | cut -c1-64)
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/$cs")" = 401 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer tok' "$url/$cs")" = 404 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: bearer tok' "$url/$cs")" = 404 ]
  [ "$(curl -s "$url/healthcheck")" = OK ]
}

@test "hashserver: oversized headers get 431; over --max-connections, an idle one makes room, else 503" {
  start seamless-hashserver buffers --writable --max-connections 1
  big=$(head -c 17000 /dev/zero | tr '\0' a)
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $big" "$url/healthcheck")" = 431 ]
  exec 7<>"/dev/tcp/127.0.0.1/${url##*:}"  # holds the only connection, idle after one request
  printf 'GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n' >&7
  read -r reply <&7
  [[ "$reply" == "HTTP/1.1 200 OK"* ]]
  [ "$(curl -s "$url/healthcheck")" = OK ]  # the idle one was closed for it
  exec 7>&-
  exec 7<>"/dev/tcp/127.0.0.1/${url##*:}"  # busy: a PUT whose body does not come
  printf 'PUT /%s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n' "$(printf x | sha256sum | cut -c1-64)" >&7
  sleep 0.5
  run curl -s -w '%{http_code}' "$url/healthcheck"
  [[ "$output" == *"server busy"*503 ]]
  exec 7>&-
}

@test "db: PUT and GET a transformation with curl" {
  start seamless-db t.db --writable
  a=$(printf a | sha256sum | cut -c1-64); b=$(printf b | sha256sum | cut -c1-64)
  [ "$(curl -s -X PUT -d "{\"type\":\"transformation\",\"checksum\":\"$a\",\"value\":\"$b\"}" "$url")" = OK ]
  [ "$(curl -s -X GET -d "{\"type\":\"transformation\",\"checksum\":\"$a\"}" "$url")" = "$b" ]
}

@test "db: read-only mode starts and refuses writes" {
  start seamless-db t.db --writable
  kill "$pid"; wait "$pid" || true
  start seamless-db t.db
  [ "$(curl -s "$url/healthcheck")" = OK ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -d '{"type":"transformation"}' "$url")" = 405 ]
}

@test "db: a missing file without --writable is one line, exit 1" {
  run --separate-stderr seamless-db missing.db
  [ "$status" -eq 1 ]
  [[ "$stderr" == "seamless-db: error: database file missing.db does not exist"* ]]
}

@test "db: a file that is not a database is one line, exit 1" {
  head -c 5000 /dev/urandom > junk.db
  run --separate-stderr seamless-db junk.db --writable --port 0
  [ "$status" -eq 1 ]
  [ "$(echo "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == seamless-db:\ error:* ]]
}
