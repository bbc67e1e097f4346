//! Facts about the machine a run was taken on, including the device's own
//! fdatasync latency: every durable write of etcd or ferrokv waits for at
//! least one, so it is the floor a put's latency is judged against.

use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

/// fdatasync samples taken per measurement.
const FSYNC_SAMPLES: usize = 200;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    /// 4 KiB overwrite in a preallocated file + fdatasync, on the filesystem
    /// holding the data dirs.
    pub fdatasync_us_p50: f64,
    pub fdatasync_us_p99: f64,
    pub fdatasync_dir: String,
    /// The ferrobench commit, when run from a git checkout.
    pub ferrobench_commit: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn memory_bytes() -> u64 {
    read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Median and p99 of `FSYNC_SAMPLES` 4 KiB writes each followed by
/// fdatasync, in a scratch file under `dir` that is preallocated and synced
/// first, so each sync flushes data only (as a preallocated WAL segment
/// does), not a file size change.
pub fn measure_fdatasync(dir: &Path) -> std::io::Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".ferrobench-fsync-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let block = [0x5au8; 4096];
    for _ in 0..FSYNC_SAMPLES {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    file.seek(SeekFrom::Start(0))?;
    let mut samples = Vec::with_capacity(FSYNC_SAMPLES);
    for _ in 0..FSYNC_SAMPLES {
        file.write_all(&block)?;
        let t = Instant::now();
        // SAFETY: the descriptor is owned by `file`, which is open here.
        let rc = unsafe { libc::fdatasync(file.as_raw_fd()) };
        if rc != 0 {
            let _ = std::fs::remove_file(&path);
            return Err(std::io::Error::last_os_error());
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    samples.sort_by(f64::total_cmp);
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok((p(0.5), p(0.99)))
}

/// Collects the facts; `data_dir` is where the systems under test write.
pub fn collect(data_dir: &Path) -> Machine {
    let (p50, p99) = measure_fdatasync(data_dir).unwrap_or((f64::NAN, f64::NAN));
    Machine {
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model: cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: memory_bytes(),
        fdatasync_us_p50: p50,
        fdatasync_us_p99: p99,
        fdatasync_dir: data_dir.display().to_string(),
        ferrobench_commit: git_commit(),
    }
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp, and the same as a
/// directory-safe name (`2026-11-26T09-31-02Z`).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (mo <= 2) as i64;
    (
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}-{m:02}-{s:02}Z"),
    )
}
