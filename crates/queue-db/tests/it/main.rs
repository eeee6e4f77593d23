//! Integration tests of the queue database through its public API.

mod crash;
mod safety_net;
