//! sluice receive.
