//! Scrapes a server's Prometheus `/metrics` so a run can be checked against
//! the server's own counters (etcd: `etcd_mvcc_put_total`,
//! `etcd_server_proposals_committed_total`, ...).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Counters worth a cross-check, summed over their label sets.
pub const COUNTERS: [&str; 8] = [
    "etcd_mvcc_put_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_mvcc_delete_total",
    "etcd_server_proposals_committed_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_mvcc_watcher_total",
];

/// GET http://{addr}/metrics with a plain HTTP/1.0 request.
pub fn fetch(addr: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    let (head, rest) = body
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{addr}: malformed HTTP response"))?;
    anyhow::ensure!(
        head.contains(" 200 "),
        "{addr}/metrics: {}",
        head.lines().next().unwrap_or("")
    );
    Ok(rest.to_string())
}

/// The values of `names` in a Prometheus text exposition, each summed over
/// its label sets.
pub fn parse(text: &str, names: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if names.contains(&name) {
            if let Ok(v) = value.parse::<f64>() {
                *out.entry(name.to_string()).or_default() += v;
            }
        }
    }
    out
}

/// The cross-check counters of one server.
pub fn scrape(addr: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    Ok(parse(&fetch(addr)?, &COUNTERS))
}

/// `after - before`, per counter present in both.
pub fn delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(k, v)| before.get(k).map(|b| (k.clone(), v - b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_skips_comments() {
        let text =
            "# HELP x\nfoo_total{a=\"1\"} 2\nfoo_total{a=\"2\"} 3.5\nbar 1\nfoo_total_bucket 9\n";
        let m = parse(text, &["foo_total"]);
        assert_eq!(m.get("foo_total"), Some(&5.5));
        assert_eq!(m.len(), 1);
    }
}
