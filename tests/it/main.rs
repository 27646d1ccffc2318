//! The one integration-test binary: each module is a feature, all share the
//! simulator helpers in `support` and the mirror helpers in `harness`.

mod harness;
mod mirror;
mod sim_contract;
mod support;
