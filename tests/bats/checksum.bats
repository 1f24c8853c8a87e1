#!/usr/bin/env bats
# seamless-checksum: sha256sum-style output, stdin, errors and exit codes.

bats_require_minimum_version 1.5.0

setup() {
  cd "$BATS_TEST_TMPDIR"
  printf 'hello' > hello.txt
  printf 'a\nb\nc\n' > data.txt
}

@test "prints checksum and name like sha256sum" {
  run seamless-checksum hello.txt data.txt
  [ "$status" -eq 0 ]
  [ "$output" = "$(sha256sum hello.txt data.txt)" ]
}

@test "the checksum of hello is upstream's" {
  run seamless-checksum hello.txt
  [ "$output" = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  hello.txt" ]
}

@test "- and no argument read stdin" {
  run bash -c 'printf hello | seamless-checksum -'
  [ "$output" = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  -" ]
  run bash -c 'printf hello | seamless-checksum'
  [ "$output" = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  -" ]
}

@test "a missing file is one error line, exit 1, the others still printed" {
  run --separate-stderr seamless-checksum nope.txt hello.txt
  [ "$status" -eq 1 ]
  [ "$output" = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  hello.txt" ]
  [ "$stderr" = "seamless-checksum: error: nope.txt: No such file or directory" ]
}

@test "a directory is refused with a hint" {
  mkdir adir
  run --separate-stderr seamless-checksum adir
  [ "$status" -eq 1 ]
  [[ "$stderr" == "seamless-checksum: error: adir: is a directory"* ]]
}

@test "--help exits 0, a bad option exits 2" {
  run seamless-checksum --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"usage: seamless-checksum"* ]]
  run seamless-checksum --bogus
  [ "$status" -eq 2 ]
}

@test "no traceback on a closed pipe" {
  for i in $(seq 1 50); do cp hello.txt "f$i"; done
  run --separate-stderr bash -c 'seamless-checksum f* | head -1'
  [ "$status" -eq 0 ]
  [ -z "$stderr" ]
}
