//! The SigV4 verification core: pure, no I/O and no clock.
mod encode;
mod error;
mod keys;
mod secret;
mod sigv4a;
mod time;

pub use encode::hex;
pub use error::{Code, Rejection, SignatureDetail};
pub use keys::derive_signing_key;
pub use secret::Secret;
pub use time::AmzTime;
