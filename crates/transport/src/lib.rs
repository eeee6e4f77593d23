//! sluice transport.
