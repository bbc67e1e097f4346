#!/usr/bin/env bash
# Memory for N keys and time to serve after a restart, for ferrokv or etcd
# (same flags), one member on loopback: DESIGN.md's "memory for 1 M keys
# (64 B / 256 B)" and "restart with 1 M keys" rows.
#
#   scripts/restart-memory.sh [binary] [keys]     (default: target/release/ferrokv 1000000)
#   scripts/restart-memory.sh etcd 1000000
#
# 1. starts a fresh member, writes `keys` distinct keys (64 B keys, 256 B
#    values, 1000 clients over 100 connections, ferrobench);
# 2. reads the member's RSS (/proc/<pid>/status VmRSS) and db size;
# 3. SIGKILLs it, starts it again on the same data dir and measures the
#    time from the start until a serializable get of the last key written
#    answers (polled with etcdctl every 10 ms).
# Prints one line per figure; run it twice per binary and quote both.
set -euo pipefail
bin=${1:-target/release/ferrokv}
keys=${2:-1000000}
bench=${FERROBENCH:-target/release/ferrobench}
dir=$(mktemp -d "${TMPDIR:-/tmp}/restart-memory.XXXXXX")
port=$((20000 + RANDOM % 20000))
peer=$((port + 1))
log="$dir/member.log"
flags=(--name m --data-dir "$dir/data"
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port"
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer"
  --initial-cluster "m=http://127.0.0.1:$peer" --initial-cluster-state new
  --quota-backend-bytes 8589934592 --log-level warn)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && { echo "kept $dir"; return; }
  rm -rf "$dir"
}
trap cleanup EXIT

ready() {
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=1s \
    get --consistency=s "$1" 2>/dev/null | grep -q .
}

"$bin" "${flags[@]}" >>"$log" 2>&1 &
pid=$!
until ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" endpoint health >/dev/null 2>&1; do
  sleep 0.05
done
"$bench" run --endpoints "127.0.0.1:$port" --workload put --clients 1000 --conns 100 \
  --key-size 64 --val-size 256 --sequential-keys --key-space-size "$keys" --total "$keys" \
  --warmup 0 --no-progress >"$dir/load.txt" 2>&1
grep "put /" "$dir/load.txt" || { cat "$dir/load.txt"; exit 1; }
count=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get --prefix "" --limit 1 -w json |
  sed -n 's/.*"count":\([0-9]*\).*/\1/p')
echo "keys stored: $count"
sleep 2
rss() {
  awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %d MiB  ", $1, $2 / 1024} END {print ""}' "/proc/$pid/status"
}
echo "after load: $(rss)"
echo "data dir: $(du -sm "$dir/data" | cut -f1) MiB (db $(du -sm "$dir/data/member/snap/db" | cut -f1) MiB)"
# The last key written: ferrobench's sequential keys are the index,
# zero-padded to the key size; read one that surely exists instead.
probe=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" get --prefix "" --keys-only --limit 1 | head -1)
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
start=$(date +%s%N)
"$bin" "${flags[@]}" >>"$log" 2>&1 &
pid=$!
until ready "$probe"; do
  sleep 0.01
done
end=$(date +%s%N)
echo "restart to first read: $(((end - start) / 1000000)) ms"
echo "after restart: $(rss)"
