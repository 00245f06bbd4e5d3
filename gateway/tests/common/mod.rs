//! Helpers shared by the end-to-end test files.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, missing_docs)]

pub mod redis;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::time::SystemTime;

/// The demo mesh's region and service.
pub const REGION: &str = "eu-west-1";
/// The demo mesh's service.
pub const SERVICE: &str = "execute-api";

/// A request signed by the `aws-sigv4` crate, the way the AWS SDKs sign.
pub fn signed(
    key: (&str, &str),
    method: &str,
    url: &str,
    body: &[u8],
    time: SystemTime,
    region: &str,
) -> Request<Full<Bytes>> {
    signed_for(SERVICE, key, method, url, body, time, region)
}

/// [`signed`] for another service (e.g. `sts`).
pub fn signed_for(
    service: &str,
    key: (&str, &str),
    method: &str,
    url: &str,
    body: &[u8],
    time: SystemTime,
    region: &str,
) -> Request<Full<Bytes>> {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = Credentials::new(key.0, key.1, None, None, "e2e").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

/// A new directory under the system temp dir, unique to this process and moment.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gateway-test-{tag}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
