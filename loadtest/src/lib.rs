//! `loadtest`: a load generator for the SigV4 gateway.
//!
//! Every request is signed at send time with the `aws-sigv4` crate (the AWS SDKs'
//! signer, not the gateway's code), with static keys or sessions from the gateway's
//! STS. A scenario file ([`scenario`]) gives the mix of routes and the shares of
//! requests meant to be denied; the engine ([`engine`]) offers the load open loop (a
//! fixed arrival rate, latency measured from the intended send time) or closed loop (N
//! concurrent requests), over HTTP/1.1 or HTTP/2, plain or TLS; the report ([`report`])
//! has HDR-histogram percentiles, status and error-code counts and whether every
//! response was the expected one; [`plot`] draws the latency distribution as SVG.
//! [`compare`] runs the same load against the gateway and a plain nginx proxy.

pub mod client;
pub mod compare;
pub mod engine;
pub mod mesh;
pub mod nginx;
pub mod plot;
mod progress;
pub mod report;
pub mod rss;
pub mod scenario;
pub mod sign;

pub use engine::{Mode, RunSpec, Target, run};
pub use report::Report;
pub use scenario::{Credentials, Scenario};
