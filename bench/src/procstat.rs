//! Resource use of a process from /proc: CPU seconds, peak RSS, bytes
//! written to storage.

/// One sample of a process's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    pub cpu_s: f64,
    /// VmHWM: the largest resident set the process has had.
    pub peak_rss_bytes: u64,
    /// /proc/pid/io write_bytes: bytes sent to the storage layer.
    pub write_bytes: u64,
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid` in seconds (fields 14 and 15 of /proc/pid/stat,
/// counted after the parenthesised command name, which may hold spaces).
fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_s())
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = io.lines().find(|l| l.starts_with("write_bytes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples `pid`; counters that cannot be read come back as zero.
pub fn sample(pid: u32) -> ProcSample {
    ProcSample {
        cpu_s: cpu_s(pid).unwrap_or(0.0),
        peak_rss_bytes: status_kb(pid, "VmHWM:").unwrap_or(0) * 1024,
        write_bytes: write_bytes(pid).unwrap_or(0),
    }
}

/// Resets the peak RSS (VmHWM) of `pid` to its current RSS (Linux ≥ 4.0,
/// `/proc/pid/clear_refs` value 5), so the next sample's peak covers only
/// what came after. Returns false when the kernel refused (the peak then
/// still counts from the process start).
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// Current resident set of `pid` (VmRSS), in bytes; zero when unreadable.
pub fn rss_bytes(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:").unwrap_or(0) * 1024
}

/// Resident bytes of this process's file mappings under `dir` (the sum of
/// `Rss:` over /proc/self/smaps entries whose path starts with `dir`): the
/// pages of an mmap-ed database the process holds in memory.
pub fn mapped_rss_bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let prefix = dir.display().to_string();
    let mut inside = false;
    let mut total_kb = 0u64;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        // A mapping header starts with its address range "lo-hi".
        if first.contains('-') && !first.ends_with(':') {
            let path = line.split_whitespace().nth(5).unwrap_or("");
            inside = !prefix.is_empty() && path.starts_with(&prefix);
        } else if inside && first == "Rss:" {
            total_kb += words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    total_kb * 1024
}

/// Total size of the regular files under `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_and_rss() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let s = sample(std::process::id());
        assert!(s.peak_rss_bytes > 1 << 20, "{s:?}");
        assert!(s.cpu_s >= 0.0);
    }

    #[test]
    fn peak_rss_reset_forgets_a_freed_peak() {
        let pid = std::process::id();
        let big: Vec<u8> = vec![1u8; 64 << 20];
        // Touch every page so it is resident, then free it.
        assert_eq!(
            big.iter().step_by(4096).map(|&b| b as u64).sum::<u64>(),
            (64 << 20) / 4096
        );
        drop(big);
        let before = sample(pid).peak_rss_bytes;
        if !reset_peak_rss(pid) {
            eprintln!("clear_refs refused; peak cannot be reset on this kernel");
            return;
        }
        let after = sample(pid).peak_rss_bytes;
        assert!(after <= before, "{after} > {before}");
        assert!(after >= rss_bytes(pid) / 2, "peak below the current RSS");
    }

    #[test]
    fn mapped_file_pages_are_counted_under_their_dir() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        f.sync_all().unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let len = 1usize << 20;
        // SAFETY: a private read-only mapping of a file this test owns and
        // does not change while mapped; unmapped below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        // SAFETY: ptr maps `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let sum: u64 = bytes.iter().step_by(4096).map(|&b| b as u64).sum();
        assert_eq!(sum, 7 * 256);
        let resident = mapped_rss_bytes_under(dir.path());
        let elsewhere = mapped_rss_bytes_under(&dir.path().join("none"));
        // SAFETY: unmapping the mapping made above; `bytes` is not used after.
        unsafe { libc::munmap(ptr, len) };
        assert!(resident >= 512 << 10, "{resident}");
        assert_eq!(elsewhere, 0);
    }
}
