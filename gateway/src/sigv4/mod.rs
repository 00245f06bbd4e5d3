//! The SigV4 verification core: pure, no I/O and no clock (`now` is an argument).
//!
//! Verification runs in two stages around the identity look-up:
//!
//! 1. [`Verifier::parse`] reads the signature from the `Authorization` header or the
//!    presigned query and checks what needs no secret: shape, signed headers, credential
//!    scope, clock skew and expiry.
//! 2. The identity stage resolves [`ParsedAuth::access_key_id`] (and the session token)
//!    to a [`Credential`].
//! 3. [`Verifier::verify`] rebuilds the canonical request, checks the signature (SigV4
//!    HMAC or SigV4a ECDSA) in constant time, then the payload, and returns [`Verified`].
//!
//! Every rejection is a [`Rejection`] with an AWS error [`Code`].

mod auth;
mod canonical;
mod chunked;
mod encode;
mod error;
mod keys;
mod request;
mod secret;
mod sigv4a;
mod time;
mod verify;

pub use auth::{Algorithm, Location, ParsedAuth};
pub use chunked::{ChunkDecoder, EMPTY_SHA256_HEX};
pub use encode::hex;
pub use error::{Code, Rejection, SignatureDetail};
pub use keys::derive_signing_key;
pub use request::{Body, Credential, Limits, Policy, Request, S3_SERVICES};
pub use secret::Secret;
pub use time::AmzTime;
pub use verify::{Payload, Verified, Verifier};
