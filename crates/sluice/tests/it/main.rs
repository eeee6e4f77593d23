//! End-to-end tests of the `sluice` binary: real processes, real sockets, real files.

mod harness;

mod actions;
mod admin;
mod config;
mod crash;
mod diskfull;
mod dns;
mod dsn;
mod hardening;
mod poison;
mod relay;
mod safety_net;
mod send_tls;
mod smtp;
mod status;
mod tls;
