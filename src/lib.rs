//! lomi-sync keeps a local SQLite mirror of a lomi. merchant's customers and each
//! customer's transactions. See `ARCHITECTURE.md` for the map of the modules.
//!
//! Data flows one way: [`api`] fetches and checks, [`sync`] decides what changed,
//! [`store`] writes. The store never does HTTP and the API client never touches SQLite.
//! [`app::Mirror::build`] wires them from the settings, for the binary and the tests alike.

#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod config;
pub mod metrics;
pub mod money;
pub mod query;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod verify;
