//! The one integration-test binary: each module is a feature, all share the
//! simulator helpers in `support` and the mirror helpers in `harness`.

mod analytics;
mod bad_responses;
mod cli;
mod daemon;
mod details_fill;
mod docs;
mod feed_client;
mod feed_engine;
mod harness;
mod layering;
mod metrics;
mod mirror;
mod misbehaviour_client;
mod paging;
mod pg_schema;
mod pg_surfaces;
mod pg_tls;
mod postgres;
mod rate_budget;
mod resilience;
mod sim_contract;
mod store;
mod support;
mod ux;
mod webhook_sim;
mod webhooks;
