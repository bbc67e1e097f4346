# The two entry points. Both build once in the release profile (tests and
# benchmarks share it) and install missing system packages first.
CARGO ?= cargo

.PHONY: all deps build test bench bench-btree crash-soak fmt clippy

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	$(CARGO) build --release --workspace --all-targets

# Every test binary runs even after a failure, so one run reports all of them.
# The property tests (btree, index, mvcc models, freelist) draw their cases
# from a fixed seed here, so the gate is reproducible; `make proptest-explore`
# draws fresh ones.
PROPTEST_SEED ?= 20261126
test: deps
	PROPTEST_RNG_SEED=$(PROPTEST_SEED) $(CARGO) test --release --workspace --no-fail-fast

# The model-based property tests, four times over with fresh random seeds
# (proptest saves a failing case under proptest-regressions/ next to the
# test, and every later run, `make test` included, replays it first).
.PHONY: proptest-explore
proptest-explore: deps
	for i in 1 2 3 4; do \
		$(CARGO) test --release -p engine --test btree_model --test index_model --test mvcc_model || exit 1; \
		$(CARGO) test --release -p engine --lib btree::freelist || exit 1; \
	done

# The main job: build ferrobench and ferrokv, run campaigns/quick.toml
# (ferrokv and etcd 1-node and 3-node, the embedded engine; about 8.5
# minutes), print the summary and write results/quick/<timestamp>/
# (results.json, summary.md, plots, .hgrm, logs).
bench: deps
	$(CARGO) build --release -p bench --bin ferrobench -p server --bin ferrokv
	./target/release/ferrobench campaign campaigns/quick.toml --out results

# The storage engine comparison: the own B+tree against redb and LMDB,
# table in results/btree.md.
bench-btree: deps
	$(CARGO) bench -p bench --bench btree -- --quick
	$(CARGO) run --release -p bench --bin btree-table -- target/criterion results/btree.md

# The B+tree crash test with ten times the kills of `make test`.
crash-soak: deps
	BTREE_CRASH_KILLS=2000 $(CARGO) test --release -p engine --test btree_crash -- --nocapture

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings

# The WAL crash test with ten times the kills of `make test` (per I/O path).
.PHONY: wal-crash-soak
wal-crash-soak: deps
	WAL_CRASH_KILLS=2000 $(CARGO) test --release -p engine --test wal_crash -- --nocapture

# The WAL group-commit matrix (appenders × record sizes × io_uring/portable),
# table, machine facts and targets in results/wal.md.
.PHONY: bench-wal
bench-wal: deps
	$(CARGO) bench -p bench --bench wal -- --secs 1 --rounds 5

# raftlog replication benchmark: 3 nodes on loopback, proposers 1/16/256 ×
# max_inflight 1/256 × parallel leader persistence on/off, then the
# pipelining mechanism with small messages and emulated network delay.
# Tables go to target/raftlog-bench/; results/raft.md holds a reference run.
.PHONY: bench-raft
bench-raft: deps
	$(CARGO) build --release -p raftlog --bin raftlog-bench
	./target/release/raftlog-bench --rounds 3 --secs 3 --out target/raftlog-bench/matrix.md
	./target/release/raftlog-bench --rounds 3 --secs 3 --proposers 256 --inflight 1,256 --persist on \
		--msg-kib 4,1024 --delay-ms 0,1 --out target/raftlog-bench/pipelining.md

# raftlog's process crash test and simulator scenarios at soak scale.
.PHONY: raft-crash-soak
raft-crash-soak: deps
	RAFTLOG_CRASH_KILLS=500 $(CARGO) test --release -p raftlog --test process_crash -- --nocapture
	RAFTLOG_SIM_SEEDS=300 $(CARGO) test --release -p raftlog --test sim_cluster -- --nocapture

# The revision index and the MVCC store (skiplist vs RwLock<BTreeMap>,
# in-process puts and ranges, history, rebuild, memory): results/mvcc.md.
.PHONY: bench-mvcc mvcc-crash-soak
bench-mvcc: deps
	$(CARGO) bench -p bench --bench mvcc -- --write results/mvcc.md

# The MVCC crash test with ten times the kills of `make test`.
mvcc-crash-soak: deps
	MVCC_CRASH_KILLS=400 $(CARGO) test --release -p engine --test mvcc_crash -- --nocapture

# ferrokv's 3-member SIGKILL test (server/tests/cluster_crash.rs) with ten
# times the kills of `make test`.
.PHONY: server-soak
server-soak: deps
	SERVER_CRASH_KILLS=60 $(CARGO) test --release -p server --test cluster_crash -- --nocapture

# ferrokv SIGKILLed at the n-th call of each durability syscall (strace
# fault injection), every n the member reaches (server/tests/syscall_kills.rs;
# 733 points, about 6 minutes; `make test` runs 114 of them).
.PHONY: server-sweep
server-sweep: deps
	SERVER_SWEEP_FULL=1 $(CARGO) test --release -p server --test syscall_kills -- --nocapture
