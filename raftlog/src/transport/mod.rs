//! Peer transports: the TCP transport the node runs with, and the faulty
//! in-process network the simulator runs with.

pub mod sim;
