//! sluice smtp.
