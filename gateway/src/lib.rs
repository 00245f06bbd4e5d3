//! The SigV4 service-to-service auth gateway.
//!
//! [`sigv4`] is the pure verification core: it turns a request as received into a
//! [`sigv4::Verified`] proof or a [`sigv4::Rejection`] carrying an AWS error code.

pub mod sigv4;
