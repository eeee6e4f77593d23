//! sluice config.
