//! The SigV4 service-to-service auth gateway.
//!
//! [`sigv4`] is the pure verification core: it turns a request as received into a
//! [`sigv4::Verified`] proof or a [`sigv4::Rejection`] carrying an AWS error code.
//!
//! A request flows one way: [`listener`] (TCP, TLS) -> [`verify`] (SigV4, with the
//! [`identity`] look-up in the middle) -> [`authorize`] (route and allow matrix) ->
//! [`forward`] (to the upstream, with an [`assertion`] of who called). [`stack`] is
//! the one place that order is written down.

pub mod admin;
pub mod assertion;
pub mod audit;
pub mod authorize;
pub mod body;
pub mod build_info;
pub mod certs;
pub mod config;
pub mod context;
pub mod demo;
pub mod error;
pub mod forward;
pub mod healthcheck;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod pki;
pub mod random;
pub mod reload;
pub mod replay;
pub mod server;
pub mod sigv4;
pub mod stack;
pub mod state;
pub mod sts;
pub mod telemetry;
pub mod throttle;
pub mod trace;
pub mod trail;
pub mod verify;
