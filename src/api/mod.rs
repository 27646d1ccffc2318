//! The lomi. Customers API client: paging, retries, the shared rate budget, and checking
//! every response before anyone uses it. It never touches the database.

pub mod budget;
mod client;
pub mod limiter;
pub mod model;
pub mod timestamp;

pub use client::{
    ApiClient, ApiError, ClientOptions, Counters, CustomerRead, FeedQuery, StatusFilter,
};
pub use model::{Customer, CustomerPage, RegisteredWebhook, Transaction, TransactionList};
