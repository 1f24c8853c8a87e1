#!/usr/bin/env bats
# seamless-run from the shell: every flag, every error message, exit codes.

bats_require_minimum_version 1.5.0

setup() {
  cd "$BATS_TEST_TMPDIR"
  export SEAMLESS_CACHE="$BATS_TEST_TMPDIR/cache"
  unset SEAMLESS_REMOTE_CLIENTS
  printf 'a\nb\nc\n' > data.txt
}

@test "quick start: runs, then a cache hit prints the same" {
  run seamless-run 'sort -r data.txt | head -3'
  [ "$status" -eq 0 ] && [ "$output" = $'c\nb\na' ]
  run --separate-stderr seamless-run -v 'sort -r data.txt | head -3'
  [ "$output" = $'c\nb\na' ]
  [[ "$stderr" == *"cache hit"* ]]
}

@test "upstream's identity vectors" {
  [ "$(seamless-run --dry echo hello)" = 706b247db5f69ec5dc5b452a1a9164089faed42eaab3d461b8dfdf3217a36550 ]
  [ "$(seamless-run --dry head -n 2 data.txt)" = 23f0206e62f8993306a2cb33dfc809573f6d55b2d3e42bf79af7266ce7303b99 ]
  [ "$(seamless-run --dry -c 'head -n 2 data.txt')" = 23f0206e62f8993306a2cb33dfc809573f6d55b2d3e42bf79af7266ce7303b99 ]
}

@test "no command: one line, exit 1; bad option: exit 2; --help: exit 0" {
  run --separate-stderr seamless-run
  [ "$status" -eq 1 ] && [ "$stderr" = "seamless-run: error: no command given (usage: seamless-run [OPTIONS] COMMAND...)" ]
  run seamless-run --bogus echo
  [ "$status" -eq 2 ]
  run seamless-run --help
  [ "$status" -eq 0 ] && [[ "$output" == *"--write-remote-job"* ]]
}

@test "options end at the first command word" {
  run seamless-run echo data -v
  [ "$status" -eq 0 ] && [ "$output" = "data -v" ]
  run -127 seamless-run -- -n 2
}

@test "-c needs exactly one argument" {
  run --separate-stderr seamless-run -c head data.txt
  [ "$status" -eq 1 ] && [ "$stderr" = "seamless-run: error: -c takes the command as a single (quoted) argument" ]
}

@test "rule 1, and -g1" {
  run --separate-stderr seamless-run cat nonexist.txt
  [ "$status" -eq 1 ]
  [[ "$stderr" == "seamless-run: error: argument #2 'nonexist.txt' has an extension, so it must be an existing file, but it does not exist (-g1 turns this rule off)" ]]
  run seamless-run -g1 --dry cat nonexist.txt
  [ "$status" -eq 0 ]
}

@test "rule 2, and -g2" {
  echo x > noext
  run --separate-stderr seamless-run cat data.txt noext
  [ "$status" -eq 1 ] && [[ "$stderr" == *"argument #3 'noext' has no extension"*"-g2"* ]]
  run seamless-run -g2 cat data.txt noext
  [ "$status" -eq 0 ] && [ "$output" = $'a\nb\nc\nx' ]
}

@test "rule 3: a trailing slash means a directory" {
  run --separate-stderr seamless-run ls nodir/
  [ "$status" -eq 1 ] && [[ "$stderr" == *"ends with a slash, so it must be a directory, and it does not exist"* ]]
}

@test "a glob is not resolved: clear message" {
  run --separate-stderr seamless-run cat '*.txt'
  [ "$status" -eq 1 ] && [[ "$stderr" == *"pattern or expansion"* ]]
}

@test "-w and -W" {
  mkdir w && cp data.txt w/
  cd w
  run seamless-run -w .. --dry -j ../job1 cat data.txt
  [ "$status" -eq 0 ] && [ "$(cat ../job1/command.txt)" = $'(\ncat w/data.txt\n) > RESULT' ]
  run seamless-run -W --dry -j ../job2 cat data.txt
  [[ "$(cat ../job2/command.txt)" == *"cat ${BATS_TEST_TMPDIR#/}/w/data.txt"* ]]
}

@test "inputs outside the argtyping directory are refused" {
  mkdir w && cd w
  run --separate-stderr seamless-run cat ../data.txt
  [ "$status" -eq 1 ] && [[ "$stderr" == *"not under the directory"*"-w DIR or -W"* ]]
}

@test "-ms and -mx" {
  mkdir sub && cp data.txt sub/
  run seamless-run -ms --dry -j job1 cat sub/data.txt
  [ "$(cat job1/command.txt)" = $'(\ncat data.txt\n) > RESULT' ]
  run seamless-run -mx --dry -j job2 cat sub/data.txt
  [ "$(cat job2/command.txt)" = $'(\ncat file1.txt\n) > RESULT' ]
  mkdir a b && echo 1 > a/x.txt && echo 2 > b/x.txt
  run --separate-stderr seamless-run -ms cat a/x.txt b/x.txt
  [ "$status" -eq 1 ] && [[ "$stderr" == *"would both be called 'x.txt'"* ]]
}

@test "-cp X, A:B and :B" {
  run seamless-run -cp out.txt -cp :so.txt 'seq 2 > out.txt; echo hi'
  [ "$status" -eq 0 ]
  [ "$(cat out.txt)" = $'1\n2' ] && [ "$(cat so.txt)" = hi ]
  [ "$(cat out.txt.CHECKSUM)" = "$(sha256sum out.txt | cut -c1-64)" ]
  run seamless-run -cp res:local 'mkdir res; echo 1 > res/a'
  [ "$(cat local/a)" = 1 ] && [ -f local.INDEX ] && [ -f local.CHECKSUM ]
}

@test "a redirection of the last command is a result" {
  run seamless-run 'seq 3 > out.txt'
  [ "$status" -eq 0 ] && [ "$(cat out.txt)" = $'1\n2\n3' ]
}

@test "-i and -I" {
  echo extra > extra.txt
  mkdir lists && echo ../extra.txt > lists/list.txt
  run seamless-run -i extra.txt 'cat data.txt; cat extra.txt'
  [ "$output" = $'a\nb\nc\nextra' ]
  run seamless-run -I lists/list.txt 'cat extra.txt'
  [ "$output" = extra ]
  run --separate-stderr seamless-run -i nope.txt echo hi
  [ "$status" -eq 1 ] && [[ "$stderr" == *"'nope.txt' (-i/-I): file or directory does not exist"* ]]
  run --separate-stderr seamless-run -I nolist.txt echo hi
  [ "$status" -eq 1 ] && [ "$stderr" = "seamless-run: error: --input-file 'nolist.txt' is not a file" ]
}

@test "--var and --metavar" {
  run seamless-run --var N=2 'head -n $N data.txt; cat N'
  [ "$output" = $'a\nb\n2' ]
  a=$(seamless-run --dry --metavar T=4 'echo $T')
  b=$(seamless-run --dry --metavar T=8 'echo $T')
  [ "$a" = "$b" ]
  run seamless-run --metavar T=4 'echo $T'
  [ "$output" = 4 ]
  run --separate-stderr seamless-run --var 1N=2 echo
  [ "$status" -eq 1 ] && [[ "$stderr" == *"must match [A-Za-z_][A-Za-z0-9_]*"* ]]
  run --separate-stderr seamless-run --var N=2 --var N=3 echo
  [ "$status" -eq 1 ] && [[ "$stderr" == *"given twice with different values"* ]]
  run --separate-stderr seamless-run --var N echo
  [ "$status" -eq 1 ] && [[ "$stderr" == *"expected NAME=VALUE"* ]]
  run --separate-stderr seamless-run --metavar META__T=1 echo
  [ "$status" -eq 1 ] && [[ "$stderr" == *"must not start with META__"* ]]
}

@test "--prologue runs first" {
  run seamless-run --prologue 'X=hello' 'echo $X'
  [ "$output" = hello ]
}

@test "--primary N argtypes the N-th command" {
  run seamless-run --primary 2 'echo START; paste data.txt data.txt'
  [ "$status" -eq 0 ] && [[ "$output" == START* ]]
  run --separate-stderr seamless-run --primary 3 'echo a; echo b'
  [ "$status" -eq 1 ] && [[ "$stderr" == *"--primary 3: the command has 2 part(s)"* ]]
}

@test "-nd and --scratch" {
  run --separate-stderr seamless-run -nd echo hi
  [ "$status" -eq 1 ] && [[ "$stderr" == *"downloading is off"* ]]
  run seamless-run -nd -cp out.txt 'seq 3 > out.txt'
  [ "$status" -eq 0 ] && [ ! -e out.txt ] && [ -f out.txt.CHECKSUM ]
  run seamless-run --scratch -cp o2.txt 'seq 4 > o2.txt'
  [ "$status" -eq 0 ] && [ ! -e o2.txt ] && [ -f o2.txt.CHECKSUM ]
}

@test "--dry, -j, --upload" {
  run --separate-stderr seamless-run -j job echo hi
  [ "$status" -eq 1 ] && [[ "$stderr" == *"need --dry"* ]]
  run seamless-run --dry -j job echo hi
  [ -f job/transformation.json ] && [ -f job/command.txt ]
  run --separate-stderr seamless-run --dry -j job echo hi
  [ "$status" -eq 1 ] && [[ "$stderr" == *"already exists"* ]]
  run seamless-run --dry --upload -j job2 echo hi
  [ "$status" -eq 0 ] && [ "$(cat job2/transformation.json.CHECKSUM)" = "$output" ]
}

@test "--write-remote-job" {
  run seamless-run --write-remote-job rjob 'head -n 1 data.txt'
  [ "$status" -eq 0 ]
  (cd rjob && bash transform.sh)
  [ "$(cat rjob/RESULT)" = a ]
}

@test "--fingertip, --local, --project, --stage, -y, -n, -q, -v are accepted" {
  run seamless-run --fingertip --local --project p --stage s -y -q echo ok
  [ "$status" -eq 0 ] && [ "$output" = ok ]
  run seamless-run -n -v -v echo ok
  [ "$status" -eq 0 ]
}

@test "--docker and --conda are recorded outside the identity" {
  a=$(seamless-run --dry echo hi)
  b=$(seamless-run --dry --docker ubuntu echo hi)
  [ "$a" = "$b" ]
  seamless-run --dry -j job --docker ubuntu echo hi
  [ -f job/env.json ]
}

@test "--undo is refused clearly" {
  run --separate-stderr seamless-run --undo echo hi
  [ "$status" -eq 1 ] && [[ "$stderr" == *"--undo is not supported"* ]]
}

@test "a failing command: its exit code, one error line" {
  run --separate-stderr seamless-run 'echo oops >&2; exit 3'
  [ "$status" -eq 3 ]
  [ "$stderr" = $'oops\nseamless-run: error: the command failed with exit code 3' ]
}

@test "SIGTERM: exit 130, nothing left behind" {
  seamless-run 'sleep 30' & pid=$!
  sleep 1
  kill -TERM $pid
  code=0; wait $pid || code=$?
  [ "$code" -eq 130 ]
  [ -z "$(ls cache/__TOPLEVEL__/.seamless-run/jobs 2>/dev/null)" ]
}

@test "seamless-upload then seamless-download" {
  mkdir d && echo 1 > d/a.txt
  run seamless-upload d data.txt
  [ "$status" -eq 0 ] && [ -f d.INDEX ] && [ -f d.CHECKSUM ] && [ -f data.txt.CHECKSUM ]
  rm -r d data.txt
  run seamless-run 'cat data.txt'
  [ "$output" = $'a\nb\nc' ]
  run seamless-download d data.txt
  [ "$status" -eq 0 ] && [ "$(cat d/a.txt)" = 1 ] && [ "$(cat data.txt)" = $'a\nb\nc' ]
  run seamless-download --stdout data.txt
  [ "$output" = $'a\nb\nc' ]
}

@test "seamless-upload --move keeps only sidecars" {
  mkdir d && echo 1 > d/a.txt && echo f > f.txt
  run seamless-upload --move d f.txt
  [ "$status" -eq 0 ] && [ ! -e d ] && [ ! -e f.txt ] && [ -f d.CHECKSUM ] && [ -f f.txt.CHECKSUM ]
}

@test "seamless-download errors" {
  run --separate-stderr seamless-download nothing.txt
  [ "$status" -eq 1 ] && [[ "$stderr" == *"no nothing.txt.CHECKSUM sidecar"* ]]
  run --separate-stderr seamless-download 0000000000000000000000000000000000000000000000000000000000000000
  [ "$status" -eq 1 ] && [[ "$stderr" == *"not in any store"* ]]
}

@test "-v says executed, then cache hit; -q says nothing" {
  run --separate-stderr seamless-run -v 'sort -r data.txt'
  [ "$output" = $'c\nb\na' ] && [[ "$stderr" == *"seamless-run: executed in "*" s (process)"* ]]
  run --separate-stderr seamless-run -v 'sort -r data.txt'
  [[ "$stderr" == *"seamless-run: cache hit: result "*" (computing it took "*" s)"* ]]
  [[ "$stderr" != *"executed in"* ]]
  run --separate-stderr seamless-run -q 'sort -r data.txt'
  [ "$output" = $'c\nb\na' ] && [ -z "$stderr" ]
}

@test "SEAMLESS_SUMMARY=1: one line at the end of a script run as its own job" {
  export XDG_RUNTIME_DIR="$BATS_TEST_TMPDIR/runtime" && mkdir -m 700 "$XDG_RUNTIME_DIR"
  printf '%s\n' "seamless-run 'sort data.txt'" "seamless-run 'wc -l data.txt'" "seamless-run 'sort data.txt'" \
    'echo script done >&2' > script.sh
  SEAMLESS_SUMMARY=1 setsid -w bash script.sh > out 2> err
  for _ in $(seq 100); do grep -q '^seamless: ' err && break; sleep 0.1; done
  [ "$(cat out)" = $'a\nb\nc\n3 data.txt\na\nb\nc' ]
  [ "$(sed -n 1p err)" = "script done" ] && [ "$(wc -l < err)" -eq 2 ]
  [[ "$(sed -n 2p err)" =~ ^seamless:\ 3\ steps:\ 1\ cached,\ 2\ executed\ \([0-9.]+\ s\)\;\ about\ [0-9.]+\ s\ saved$ ]]
  setsid -w bash script.sh > out 2> err
  [ "$(cat err)" = "script done" ] && [ -z "$(ls "$XDG_RUNTIME_DIR/seamless-summary")" ]
}
