#!/usr/bin/env bash
# Installs the system packages ferrokv's tests and benchmarks need. Idempotent:
# a package that is already present is not touched, so this runs on every
# `make test` / `make bench` in a second or two.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }

# gcc builds LMDB (the heed comparison backend) from source.
have_cmd cc || need+=(gcc)
have_cmd make || need+=(make)
# etcd 3.4 and etcdctl: the reference the server's tests compare against.
have_cmd etcd || need+=(etcd-server)
have_cmd etcdctl || need+=(etcd-client)
# valgrind: ferrobench's deterministic gate counts instructions with callgrind.
have_cmd valgrind || need+=(valgrind)
# strace: the B+tree creation test SIGKILLs a child at a chosen write.
have_cmd strace || need+=(strace)

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "install-deps: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

if ! have_cmd cargo; then
  echo "install-deps: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
echo "install-deps: ok"
