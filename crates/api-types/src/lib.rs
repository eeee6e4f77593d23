//! sluice api-types.
