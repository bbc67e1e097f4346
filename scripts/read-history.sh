#!/usr/bin/env bash
# Serializable gets on a fresh member and again after 150 000 more writes to
# the same 10 000 keys (15 versions each), for ferrokv or etcd (same flags):
# DESIGN.md's "serializable get, 100 clients: no decay with history" row.
#
#   scripts/read-history.sh [binary] [writes]   (default: target/release/ferrokv 150000)
#   scripts/read-history.sh etcd
#
# Prints ferrobench's cell line for the fresh read, the writes, and the
# read after them.
set -euo pipefail
bin=${1:-target/release/ferrokv}
writes=${2:-150000}
bench=${FERROBENCH:-target/release/ferrobench}
dir=$(mktemp -d "${TMPDIR:-/tmp}/read-history.XXXXXX")
port=$((20000 + RANDOM % 20000))
peer=$((port + 1))
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$bin" --name m --data-dir "$dir/data" \
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "m=http://127.0.0.1:$peer" --initial-cluster-state new --log-level warn \
  >"$dir/member.log" 2>&1 &
pid=$!
until ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" endpoint health >/dev/null 2>&1; do
  sleep 0.05
done
read_cell() {
  "$bench" run --endpoints "127.0.0.1:$port" --workload range --consistency s --clients 100 \
    --key-space-size 10000 --duration 5 --no-progress "$@" 2>&1 | grep "range-s /"
}
echo "fresh:   $(read_cell)"
"$bench" run --endpoints "127.0.0.1:$port" --workload put --clients 1000 --conns 100 \
  --key-space-size 10000 --total "$writes" --warmup 0 --no-progress 2>&1 | grep "put /" |
  sed 's/^/writes:  /'
echo "history: $(read_cell --no-preload)"
