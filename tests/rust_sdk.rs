//! The Rust AWS SDK against the real gateway binary: `aws-sdk-sts` (rustls/ring HTTP
//! client, the demo CA as its only trust root) for AssumeRole and GetCallerIdentity
//! at `<gateway>/sts`, and `aws-sigv4`, the SDK's signer, for plain requests to PBCs:
//! header-signed and presigned, with static keys and with the STS session. Each: an
//! allowed call, a denied call and tampered calls, checked against the audit log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use aws_credential_types::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata as _;
use aws_sdk_sts::operation::RequestId as _;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use bytes::Bytes;
use client_e2e::{
    CATALOGUE, CHECKOUT, Demo, Https, Identity, ORDER_PATH, ORDER_RULE, REGION, SERVICE,
    SESSION_RULE, STS_ROLE, assert_refused_record, assumed_role_arn, flip_char,
};
use http_body_util::Full;
use std::time::{Duration, SystemTime};

/// An `aws-sdk-sts` client for the gateway's STS, trusting only the demo CA.
fn sts_client(demo: &Demo, creds: Credentials) -> aws_sdk_sts::Client {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let ca = std::fs::read(demo.ca()).unwrap();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(ca))
                .build()
                .unwrap(),
        )
        .build_https();
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new(REGION))
        .endpoint_url(demo.sts_url())
        .credentials_provider(creds)
        .http_client(http)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

fn static_key(who: Identity, secret: &str) -> Credentials {
    Credentials::new(who.access_key_id, secret, None, None, "demo")
}

/// How [`signed`] signs.
#[derive(Clone, Copy)]
enum Where {
    /// `authorization` header, the body's SHA-256 signed in `x-amz-content-sha256`.
    Header,
    /// A presigned URL (`X-Amz-*` query parameters), valid for 5 minutes.
    Query,
}

/// A request to the gateway signed by `aws-sigv4`, as the AWS SDKs sign.
fn signed(
    demo: &Demo,
    creds: &Credentials,
    how: Where,
    method: &str,
    path: &str,
    body: &'static [u8],
) -> http::Request<Full<Bytes>> {
    let mut settings = SigningSettings::default();
    match how {
        Where::Header => settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256,
        Where::Query => {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(300));
        }
    }
    let identity = creds.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(SERVICE)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = demo.at(path);
    let headers = [("content-type", "application/json")];
    let signable =
        SignableRequest::new(method, &url, headers.into_iter(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header(headers[0].0, headers[0].1)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

/// `req` sent to another path, everything else (signature included) unchanged.
fn with_path(
    mut req: http::Request<Full<Bytes>>,
    from: &str,
    to: &str,
) -> http::Request<Full<Bytes>> {
    let uri = req.uri().to_string().replacen(from, to, 1);
    *req.uri_mut() = uri.parse().unwrap();
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_sts_assume_role_and_the_session_on_the_mesh() {
    let demo = Demo::start("rust-sdk-sts");
    let https = Https::new(demo.ca());
    let checkout = sts_client(&demo, static_key(CHECKOUT, CHECKOUT.secret));

    let me = checkout.get_caller_identity().send().await.unwrap();
    assert_eq!(me.arn(), Some(CHECKOUT.role_arn));
    assert_eq!(me.account(), Some("111122223333"));

    // Allowed: checkout assumes CheckoutToOrderRole.
    let out = checkout
        .assume_role()
        .role_arn(STS_ROLE)
        .role_session_name("rust-sdk")
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.assumed_role_user().unwrap().arn(),
        assumed_role_arn("rust-sdk")
    );
    let issued = out.credentials().unwrap();
    assert!(issued.access_key_id().starts_with("ASIA"));
    let record = demo.audit_record(out.request_id().unwrap());
    assert_eq!(record["eventName"], "AssumeRole", "{record}");
    assert_eq!(record["decision"], "Allow", "{record}");
    assert_eq!(record["sts"]["issuedAccessKeyId"], issued.access_key_id());
    let session = Credentials::new(
        issued.access_key_id(),
        issued.secret_access_key(),
        Some(issued.session_token().to_string()),
        None,
        "gateway-sts",
    );

    // GetCallerIdentity with the issued credentials names the session.
    let me = sts_client(&demo, session.clone())
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(me.arn(), Some(assumed_role_arn("rust-sdk").as_str()));

    // Denied: the role's trust policy does not name catalogue.
    let err = sts_client(&demo, static_key(CATALOGUE, CATALOGUE.secret))
        .assume_role()
        .role_arn(STS_ROLE)
        .role_session_name("rust-sdk-catalogue")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    let record = demo.audit_record(err.request_id().unwrap());
    assert_refused_record(&record, 403, "AccessDenied");
    assert!(record["sts"].get("issuedAccessKeyId").is_none(), "{record}");

    // Tampered: checkout's key with a wrong secret.
    let err = sts_client(
        &demo,
        static_key(CHECKOUT, "not+the+checkout+secret+at+all"),
    )
    .assume_role()
    .role_arn(STS_ROLE)
    .role_session_name("rust-sdk-forged")
    .send()
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
    let record = demo.audit_record(err.request_id().unwrap());
    assert_refused_record(&record, 403, "SignatureDoesNotMatch");

    // Tampered: the session token with one character changed.
    let token = issued.session_token();
    let altered = Credentials::new(
        issued.access_key_id(),
        issued.secret_access_key(),
        Some(flip_char(token, token.len() / 2)),
        None,
        "altered",
    );
    let err = sts_client(&demo, altered.clone())
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");

    // The session on the mesh, signed by aws-sigv4 (x-amz-security-token signed).
    // Allowed: its role reads orders.
    let ok = https
        .send(signed(
            &demo,
            &session,
            Where::Header,
            "GET",
            ORDER_PATH,
            b"",
        ))
        .await;
    let seen = demo.assert_forwarded(&ok, "order", &assumed_role_arn("rust-sdk"), SESSION_RULE);
    assert_eq!(seen["caller"]["access_key_id"], issued.access_key_id());
    // Denied: and nothing else.
    let denied = https
        .send(signed(
            &demo,
            &session,
            Where::Header,
            "POST",
            "/payment/payments",
            b"{}",
        ))
        .await;
    let record = demo.assert_refused(&denied, 403, "AccessDenied");
    assert_eq!(record["targetPbc"], "payment");
    // Tampered: the altered token.
    let tampered = https
        .send(signed(
            &demo,
            &altered,
            Where::Header,
            "GET",
            ORDER_PATH,
            b"",
        ))
        .await;
    demo.assert_refused(&tampered, 403, "InvalidClientTokenId");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sigv4_static_keys_header_and_presigned() {
    let demo = Demo::start("rust-sigv4");
    let https = Https::new(demo.ca());
    let checkout = static_key(CHECKOUT, CHECKOUT.secret);
    let catalogue = static_key(CATALOGUE, CATALOGUE.secret);

    for how in [Where::Header, Where::Query] {
        // Allowed: checkout reads an order.
        let ok = https
            .send(signed(&demo, &checkout, how, "GET", ORDER_PATH, b""))
            .await;
        let seen = demo.assert_forwarded(&ok, "order", CHECKOUT.role_arn, ORDER_RULE);
        assert_eq!(seen["caller"]["pbc"], "checkout");
        // The upstream gets neither the signature nor the presign parameters.
        assert_eq!(seen["path"], "/orders/42", "{seen}");

        // Denied: catalogue calls nothing.
        let denied = https
            .send(signed(&demo, &catalogue, how, "GET", ORDER_PATH, b""))
            .await;
        let record = demo.assert_refused(&denied, 403, "AccessDenied");
        assert_eq!(record["userIdentity"]["callerPbc"], "catalogue");

        // Tampered: signed for /order/orders/42, sent to /order/orders/43.
        let moved = with_path(
            signed(&demo, &checkout, how, "GET", ORDER_PATH, b""),
            "/order/orders/42",
            "/order/orders/43",
        );
        let tampered = https.send(moved).await;
        demo.assert_refused(&tampered, 403, "SignatureDoesNotMatch");

        // Tampered: a wrong secret.
        let forged = static_key(CHECKOUT, "not+the+checkout+secret+at+all");
        let wrong = https
            .send(signed(&demo, &forged, how, "GET", ORDER_PATH, b""))
            .await;
        demo.assert_refused(&wrong, 403, "SignatureDoesNotMatch");
    }

    // A signed body: delivered as sent, and refused once changed after signing (its
    // SHA-256 is signed in x-amz-content-sha256).
    let body: &[u8] = br#"{"sku":"sku-1","quantity":1}"#;
    let ok = https
        .send(signed(
            &demo,
            &checkout,
            Where::Header,
            "POST",
            "/order/orders",
            body,
        ))
        .await;
    let seen = demo.assert_forwarded(&ok, "order", CHECKOUT.role_arn, ORDER_RULE);
    assert_eq!(seen["body"]["quantity"], 1, "{seen}");
    let mut swapped = signed(
        &demo,
        &checkout,
        Where::Header,
        "POST",
        "/order/orders",
        body,
    );
    *swapped.body_mut() = Full::new(Bytes::from_static(br#"{"sku":"sku-1","quantity":9}"#));
    let tampered = https.send(swapped).await;
    demo.assert_refused(&tampered, 400, "XAmzContentSHA256Mismatch");
}
