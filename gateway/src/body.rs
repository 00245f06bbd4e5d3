//! The body type every stage passes along: a boxed stream of bytes, so a buffered
//! body, a streamed upstream response and a chunk-verifying stream look alike.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// Errors a body stream can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The gateway's request and response body.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `data` whole.
pub fn full(data: impl Into<Bytes>) -> GatewayBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> GatewayBody {
    full(Bytes::new())
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> GatewayBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
