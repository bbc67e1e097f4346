//! Prometheus metrics, named as etcd names them where they mean the same
//! thing, so dashboards and ferrobench's independent counters read ferrokv
//! and etcd alike. Rendered in the text exposition format at `/metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Feeds a Prometheus histogram from a cumulative HdrHistogram of
/// nanoseconds kept elsewhere (the WAL's fsyncs, the store's commits):
/// each call observes what was recorded since the previous one.
#[derive(Default)]
pub struct HistogramFeed {
    seen: parking_lot::Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl HistogramFeed {
    pub fn feed(&self, now: hdrhistogram::Histogram<u64>, target: &Histogram) {
        let mut seen = self.seen.lock();
        let mut delta = now.clone();
        if let Some(prev) = seen.as_ref() {
            // A histogram that shrank was replaced (a new store): all of
            // it is new.
            if now.len() < prev.len() || delta.subtract(prev).is_err() {
                delta = now.clone();
            }
        }
        *seen = Some(now);
        for v in delta.iter_recorded() {
            let secs = v.value_iterated_to() as f64 / 1e9;
            for _ in 0..v.count_at_value() {
                target.observe(secs);
            }
        }
    }
}

/// The server's metrics; one instance per process (`Metrics::global`).
pub struct Metrics {
    registry: Registry,
    /// etcd_disk_wal_fsync_duration_seconds: latency of WAL fdatasyncs.
    pub wal_fsync_seconds: Histogram,
    /// etcd_disk_backend_commit_duration_seconds: backend batch commits.
    pub backend_commit_seconds: Histogram,
    /// etcd_server_proposals_committed_total (a gauge in etcd: the commit
    /// index).
    pub proposals_committed: IntGauge,
    /// etcd_server_proposals_applied_total (a gauge: the applied index).
    pub proposals_applied: IntGauge,
    /// etcd_server_proposals_pending.
    pub proposals_pending: IntGauge,
    /// etcd_server_proposals_failed_total.
    pub proposals_failed: IntCounter,
    /// etcd_server_has_leader.
    pub has_leader: IntGauge,
    /// etcd_server_is_leader.
    pub is_leader: IntGauge,
    /// etcd_server_leader_changes_seen_total.
    pub leader_changes: IntCounter,
    /// etcd_server_slow_read_indexes_total / read_indexes_failed_total.
    pub read_indexes_failed: IntCounter,
    /// etcd_mvcc_db_total_size_in_bytes.
    pub db_total_size_bytes: IntGauge,
    /// etcd_mvcc_db_total_size_in_use_in_bytes.
    pub db_in_use_size_bytes: IntGauge,
    /// etcd_server_quota_backend_bytes.
    pub quota_backend_bytes: IntGauge,
    /// etcd_mvcc_{range,put,delete,txn}_total.
    pub range_total: IntCounter,
    pub put_total: IntCounter,
    pub delete_total: IntCounter,
    pub txn_total: IntCounter,
    /// etcd_debugging_mvcc_watcher_total / etcd_debugging_mvcc_watch_stream_total.
    pub watchers: IntGauge,
    pub watch_streams: IntGauge,
    /// etcd_network_client_grpc_{received,sent}_bytes_total.
    pub grpc_received_bytes: IntCounter,
    pub grpc_sent_bytes: IntCounter,
    /// grpc_server_started_total / grpc_server_handled_total by service,
    /// method and code (go-grpc-prometheus, which etcd exports).
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    /// process_* from /proc/self, as the Go client's process collector.
    process_cpu_seconds: Gauge,
    process_resident_memory_bytes: IntGauge,
    process_virtual_memory_bytes: IntGauge,
    process_open_fds: IntGauge,
    process_max_fds: IntGauge,
    process_start_time_seconds: Gauge,
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    // etcd's buckets for disk latencies: 1 ms doubling to 8.192 s.
    let buckets = exponential_buckets(0.001, 2.0, 14).expect("valid buckets");
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid histogram");
    registry.register(Box::new(h.clone())).expect("unique name");
    h
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge");
    registry.register(Box::new(g.clone())).expect("unique name");
    g
}

fn fgauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid gauge");
    registry.register(Box::new(g.clone())).expect("unique name");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid counter");
    registry.register(Box::new(c.clone())).expect("unique name");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry.register(Box::new(c.clone())).expect("unique name");
    c
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let server_version = GaugeVec::new(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )
        .expect("valid gauge");
        r.register(Box::new(server_version.clone()))
            .expect("unique name");
        server_version
            .with_label_values(&[crate::ETCD_API_VERSION])
            .set(1.0);
        let m = Metrics {
            wal_fsync_seconds: histogram(
                &r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            backend_commit_seconds: histogram(
                &r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
            proposals_committed: gauge(
                &r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                &r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: gauge(
                &r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: counter(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            has_leader: gauge(
                &r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                &r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            leader_changes: counter(
                &r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            read_indexes_failed: counter(
                &r,
                "etcd_server_read_indexes_failed_total",
                "The total number of failed read indexes seen.",
            ),
            db_total_size_bytes: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_in_use_size_bytes: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            quota_backend_bytes: gauge(
                &r,
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            range_total: counter(
                &r,
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            ),
            put_total: counter(
                &r,
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            ),
            delete_total: counter(
                &r,
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            txn_total: counter(
                &r,
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            ),
            watchers: gauge(
                &r,
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            ),
            watch_streams: gauge(
                &r,
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            ),
            grpc_received_bytes: counter(
                &r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            grpc_sent_bytes: counter(
                &r,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            grpc_started: counter_vec(
                &r,
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &["grpc_type", "grpc_service", "grpc_method"],
            ),
            grpc_handled: counter_vec(
                &r,
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            ),
            process_cpu_seconds: fgauge(
                &r,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            ),
            process_resident_memory_bytes: gauge(
                &r,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            process_virtual_memory_bytes: gauge(
                &r,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            process_open_fds: gauge(&r, "process_open_fds", "Number of open file descriptors."),
            process_max_fds: gauge(
                &r,
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            process_start_time_seconds: fgauge(
                &r,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
            registry: r,
        };
        m.process_start_time_seconds
            .set(process_start_time_seconds());
        m
    }

    /// The process-wide instance.
    pub fn global() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(Metrics::new)
    }

    /// Counts a finished RPC by its gRPC status code name (go-grpc-prometheus
    /// spells codes as "OK", "InvalidArgument", ...).
    pub fn rpc_handled(&self, kind: RpcKind, service: &str, method: &str, code: tonic::Code) {
        self.grpc_handled
            .with_label_values(&[kind.as_str(), service, method, code_name(code)])
            .inc();
    }

    pub fn rpc_started(&self, kind: RpcKind, service: &str, method: &str) {
        self.grpc_started
            .with_label_values(&[kind.as_str(), service, method])
            .inc();
    }

    /// The text exposition of every metric, process metrics refreshed.
    pub fn render(&self) -> String {
        self.refresh_process();
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    fn refresh_process(&self) {
        if let Some(stat) = ProcStat::read() {
            self.process_cpu_seconds.set(stat.cpu_seconds);
            self.process_resident_memory_bytes
                .set(stat.rss_bytes as i64);
            self.process_virtual_memory_bytes
                .set(stat.vsize_bytes as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.process_open_fds.set(dir.count() as i64);
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the rlimit we own and pass by
        // pointer; it keeps no reference after returning.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            self.process_max_fds.set(lim.rlim_cur as i64);
        }
    }
}

/// The gRPC call shape, as go-grpc-prometheus labels it.
#[derive(Clone, Copy, Debug)]
pub enum RpcKind {
    Unary,
    ServerStream,
    BidiStream,
}

impl RpcKind {
    fn as_str(self) -> &'static str {
        match self {
            RpcKind::Unary => "unary",
            RpcKind::ServerStream => "server_stream",
            RpcKind::BidiStream => "bidi_stream",
        }
    }
}

pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The fields of /proc/self/stat the process metrics need.
struct ProcStat {
    cpu_seconds: f64,
    vsize_bytes: u64,
    rss_bytes: u64,
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

impl ProcStat {
    fn read() -> Option<ProcStat> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may contain spaces; fields after the
        // closing parenthesis are space separated, starting at field 3.
        let rest = &text[text.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
        let ticks = field(14)? + field(15)?;
        Some(ProcStat {
            cpu_seconds: ticks as f64 / clock_ticks_per_second(),
            vsize_bytes: field(23)?,
            rss_bytes: field(24)? * page_size(),
        })
    }
}

fn process_start_time_seconds() -> f64 {
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
    });
    let start_ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| {
            let rest = t[t.rfind(')')? + 2..].to_string();
            rest.split_whitespace().nth(22 - 3)?.parse::<f64>().ok()
        });
    match (boot, start_ticks) {
        (Some(b), Some(s)) => b + s / clock_ticks_per_second(),
        _ => 0.0,
    }
}

/// Times a block into a histogram.
pub struct Timer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl<'a> Timer<'a> {
    pub fn start(histogram: &'a Histogram) -> Timer<'a> {
        Timer {
            histogram,
            start: Instant::now(),
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_etcds_names_and_process_metrics() {
        let m = Metrics::global();
        m.wal_fsync_seconds.observe(0.0004);
        m.proposals_committed.set(7);
        m.rpc_handled(RpcKind::Unary, "etcdserverpb.KV", "Put", tonic::Code::Ok);
        let text = m.render();
        for name in [
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}",
            "etcd_disk_backend_commit_duration_seconds_count",
            "etcd_server_proposals_committed_total 7",
            "etcd_mvcc_db_total_size_in_bytes",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 1e6, "rss {rss}");
    }
}
