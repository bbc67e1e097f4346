//! Static bootstrap: etcd's `--initial-cluster name=url,name=url,...` and the
//! member ids derived from it.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Raft id, derived from the cluster token and the name (see [`member_id`]).
    pub id: u64,
    pub name: String,
    /// Peer URLs as given (`http://host:port`); the first one is dialled.
    pub peer_urls: Vec<String>,
}

impl Member {
    /// `host:port` of the first peer URL.
    pub fn peer_addr(&self) -> &str {
        url_host_port(&self.peer_urls[0])
    }
}

/// Whether a node starts a new cluster or joins an existing one
/// (etcd's `--initial-cluster-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Every listed member bootstraps the same initial configuration.
    New,
    /// The node starts empty and learns the configuration from the leader
    /// after it was added by a membership change.
    Existing,
}

/// The parsed `--initial-cluster`, members ordered by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialCluster {
    pub token: String,
    pub members: Vec<Member>,
}

/// The raft id of a member: a hash of the cluster token and the member name,
/// so every node derives the same ids from the same flags (etcd derives its
/// member ids from peer URLs and the token in the same spirit). Never 0.
pub fn member_id(token: &str, name: &str) -> u64 {
    let mut buf = Vec::with_capacity(token.len() + name.len() + 1);
    buf.extend_from_slice(token.as_bytes());
    buf.push(0);
    buf.extend_from_slice(name.as_bytes());
    // The top bit is cleared so ids print the same in signed tools.
    let id = xxhash_rust::xxh3::xxh3_64(&buf) & (u64::MAX >> 1);
    id.max(1)
}

impl InitialCluster {
    /// Parses `name=url,name=url,...`. A name may repeat to give a member
    /// several URLs, as etcd allows. URLs are `http://host:port` or
    /// `host:port`; TLS peer URLs are rejected because the transport has no TLS.
    pub fn parse(spec: &str, token: &str) -> Result<InitialCluster> {
        let bad = |what: String| Err(Error::InitialCluster(what));
        if token.is_empty() {
            return bad("the cluster token must not be empty".into());
        }
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut seen_urls = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, url)) = part.split_once('=') else {
                return bad(format!("{part:?} is not name=url"));
            };
            let (name, url) = (name.trim(), url.trim());
            if name.is_empty() {
                return bad(format!("{part:?} has an empty name"));
            }
            validate_url(url).map_err(Error::InitialCluster)?;
            if let Some(other) = seen_urls.insert(url.to_string(), name.to_string()) {
                return bad(format!("URL {url} is given to both {other} and {name}"));
            }
            by_name
                .entry(name.to_string())
                .or_default()
                .push(url.to_string());
        }
        if by_name.is_empty() {
            return bad("no members".into());
        }
        let mut members: Vec<Member> = by_name
            .into_iter()
            .map(|(name, peer_urls)| Member {
                id: member_id(token, &name),
                name,
                peer_urls,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        for pair in members.windows(2) {
            if pair[0].id == pair[1].id {
                return bad(format!(
                    "members {} and {} hash to the same id",
                    pair[0].name, pair[1].name
                ));
            }
        }
        Ok(InitialCluster {
            token: token.to_string(),
            members,
        })
    }

    pub fn member_by_name(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }
}

fn validate_url(url: &str) -> std::result::Result<(), String> {
    if url.starts_with("https://") || url.starts_with("unixs://") {
        return Err(format!("{url}: TLS peer URLs are not supported"));
    }
    let hp = url_host_port(url);
    let Some((host, port)) = hp.rsplit_once(':') else {
        return Err(format!("{url}: expected host:port"));
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "{url}: expected host:port with a port in 1..=65535"
        ));
    }
    Ok(())
}

/// `http://host:port/` → `host:port`.
pub fn url_host_port(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_style_spec() {
        let c = InitialCluster::parse(
            "infra0=http://127.0.0.1:2380,infra1=http://127.0.0.1:2381, infra2=127.0.0.1:2382",
            "tok",
        )
        .unwrap();
        assert_eq!(c.members.len(), 3);
        let m = c.member_by_name("infra2").unwrap();
        assert_eq!(m.peer_addr(), "127.0.0.1:2382");
        assert_eq!(m.id, member_id("tok", "infra2"));
        assert!(c.members.windows(2).all(|w| w[0].id < w[1].id));
        // Same flags, same ids; another token, other ids.
        let again = InitialCluster::parse("infra0=http://127.0.0.1:2380", "tok").unwrap();
        assert_eq!(again.members[0].id, c.member_by_name("infra0").unwrap().id);
        assert_ne!(member_id("other", "infra0"), again.members[0].id);
    }

    #[test]
    fn repeated_name_collects_urls() {
        let c = InitialCluster::parse("a=http://h:1,a=http://h:2", "t").unwrap();
        assert_eq!(c.members.len(), 1);
        assert_eq!(c.members[0].peer_urls.len(), 2);
    }

    #[test]
    fn rejects_bad_specs() {
        for spec in [
            "",
            "a",
            "=http://h:1",
            "a=http://h",
            "a=http://h:0",
            "a=http://h:99999",
            "a=https://h:1",
            "a=http://h:1,b=http://h:1",
        ] {
            assert!(
                InitialCluster::parse(spec, "t").is_err(),
                "{spec:?} accepted"
            );
        }
        assert!(InitialCluster::parse("a=http://h:1", "").is_err());
    }
}
