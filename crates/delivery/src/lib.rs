//! sluice delivery.
