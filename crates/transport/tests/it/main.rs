//! The transport's own tests, against a fake next hop and a real queue database in a temporary directory,
//! on tokio's paused clock: retry timing is checked in virtual seconds, without waiting for it.

mod actions;
mod counters;
mod delay;
mod dsn;
mod expiry;
mod glitch;
mod harness;
mod idle;
mod poison;
mod rates;
mod reload;
mod reroute;
mod retry;
mod safety_net;
