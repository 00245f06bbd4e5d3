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
//!
//! ```
//! use gateway::sigv4::{Body, Code, Credential, Policy, Request, Secret, Verifier};
//! use http::{HeaderMap, HeaderValue};
//!
//! let verifier = Verifier::new(Policy::new(["us-east-1"], ["service"]));
//! let mut headers = HeaderMap::new();
//! headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
//! headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
//! headers.insert("authorization", HeaderValue::from_static(
//!     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
//!      SignedHeaders=host;x-amz-date, \
//!      Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"));
//! let req = Request { method: "GET", path: "/", query: "", headers: &headers, body: Body::Bytes(b"") };
//! let now = 1_440_938_160; // 2015-08-30T12:36:00Z, Unix seconds
//!
//! let auth = verifier.parse(&req, now)?;                 // shape, scope, time
//! let secret = Secret::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"); // identity look-up
//! let credential = Credential { secret: &secret, expires_at: None, allow_unsigned_payload: false };
//! let verified = verifier.verify(&req, &auth, &credential, now)?;
//! assert_eq!(verified.access_key_id(), "AKIDEXAMPLE");
//!
//! // A bad signature names the AWS code and what the gateway computed.
//! let mut tampered = headers.clone();
//! tampered.insert("x-amz-date", HeaderValue::from_static("20150830T123601Z"));
//! let req = Request { headers: &tampered, ..req };
//! let auth = verifier.parse(&req, now)?;
//! let Err(err) = verifier.verify(&req, &auth, &credential, now) else {
//!     panic!("a tampered request must not verify");
//! };
//! assert_eq!(err.code(), Code::SignatureDoesNotMatch);
//! let computed = err.signature_detail().map(|d| d.canonical_request.as_str());
//! assert!(computed.is_some_and(|c| c.contains("x-amz-date:20150830T123601Z")));
//! # Ok::<(), gateway::sigv4::Rejection>(())
//! ```

mod auth;
mod canonical;
mod chunked;
mod encode;
mod error;
mod keys;
mod request;
mod secret;
mod sha256;
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
