//! Counters and histograms of the writer, as plain data. The server exports
//! them (`fsync_ns` as etcd's `etcd_disk_wal_fsync_duration_seconds`).

use super::options::IoPath;
use hdrhistogram::Histogram;

/// Latencies up to 60 s are recorded with three significant digits; longer
/// ones saturate at the top bucket.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

#[derive(Clone, Debug)]
pub struct Metrics {
    pub io_path: IoPath,
    /// Appends made durable (each `append`/`append_batch` call counts once).
    pub appends: u64,
    pub records: u64,
    /// Payload bytes of those records.
    pub payload_bytes: u64,
    /// Writes carrying records, each followed by one fdatasync.
    pub fsyncs: u64,
    /// Of those, the ones written by a thread in `append_wait` (the rest by
    /// the writer thread).
    pub leader_fsyncs: u64,
    /// Bytes written by those writes (framing and segment headers included).
    pub bytes_written: u64,
    pub segment_rolls: u64,
    /// Writes or fdatasyncs that failed (at most one: failure is permanent).
    pub failures: u64,
    /// Most encoded bytes ever waiting in the queue.
    pub queue_bytes_high_water: u64,
    /// Duration of one batch's write + fdatasync, in nanoseconds: from the
    /// submission to the completion (on io_uring, observed between chunks
    /// of the appender notifications that overlap it).
    pub fsync_ns: Histogram<u64>,
    pub records_per_fsync: Histogram<u64>,
    /// From the append call to the moment its ticket completed.
    pub time_to_durable_ns: Histogram<u64>,
}

impl Metrics {
    pub(crate) fn new(io_path: IoPath) -> Self {
        let latency = || Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static bounds");
        Metrics {
            io_path,
            appends: 0,
            records: 0,
            payload_bytes: 0,
            fsyncs: 0,
            leader_fsyncs: 0,
            bytes_written: 0,
            segment_rolls: 0,
            failures: 0,
            queue_bytes_high_water: 0,
            fsync_ns: latency(),
            records_per_fsync: Histogram::new_with_bounds(1, 1 << 24, 3).expect("static bounds"),
            time_to_durable_ns: latency(),
        }
    }

    /// Mean records per fdatasync.
    pub fn records_per_fsync_mean(&self) -> f64 {
        if self.fsyncs == 0 {
            return 0.0;
        }
        self.records as f64 / self.fsyncs as f64
    }
}
