//! End-to-end tests of the `sluice` binary: real processes, real sockets, real files.

mod harness;

mod actions;
mod admin;
mod audit;
mod cli;
mod cluster;
mod config;
mod crash;
mod digest;
mod diskfull;
mod dns;
mod dsn;
mod engines;
mod hardening;
mod pickup;
mod poison;
mod readme;
mod relay;
mod reload;
mod remote;
mod rules;
mod safety_net;
mod send_tls;
mod smtp;
mod status;
mod tls;
mod tracking;
mod viewer;
mod workqueue;
