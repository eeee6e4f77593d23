//! sluice admin.
