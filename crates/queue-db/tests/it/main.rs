//! Integration tests of the queue database through its public API.

mod crash;
mod latency;
mod safety_net;
