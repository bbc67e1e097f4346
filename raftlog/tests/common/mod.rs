//! Helpers shared by the loopback tests: ports for nodes that bind them
//! later.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Every port this process handed out: none is handed out twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` distinct free loopback ports, none handed out before in this process.
/// All listeners are held until all ports are chosen, so the kernel cannot
/// give the same port twice within one call. Another process may still take
/// one before the node binds it; callers retry on "address already in use".
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap();
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}

/// Whether an error text (or a node's log) says a bind found its port taken.
pub fn address_in_use(text: &str) -> bool {
    text.contains("Address already in use") || text.contains("os error 98")
}
