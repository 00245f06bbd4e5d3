//! botocore's signers from PyPI (`SigV4Auth`: the Authorization header;
//! `SigV4QueryAuth`: presigned URLs), the signing code of boto3 and the AWS CLI,
//! against the real gateway binary. `py/botocore_sigv4.py` signs and sends; this test
//! asserts on every answer and on the gateway's audit record of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use client_e2e::{CATALOGUE, CHECKOUT, Demo, ORDER_RULE, Reply, python, run_python_json};
use serde_json::Value;

fn answers(demo: &Demo) -> Value {
    let py = python(&["botocore"]);
    let ca = demo.ca().to_str().unwrap();
    run_python_json(&py, "botocore_sigv4.py", &[demo.url(), ca])
}

#[test]
fn sigv4_auth_and_sigv4_query_auth_allowed_denied_and_tampered() {
    let demo = Demo::start("botocore");
    let out = answers(&demo);
    let reply = |case: &str| Reply::from_json(&out[case]);

    // --- SigV4Auth, signature in the Authorization header ---
    // Allowed: checkout reads an order.
    let seen = demo.assert_forwarded(
        &reply("header_allowed"),
        "order",
        CHECKOUT.role_arn,
        ORDER_RULE,
    );
    assert_eq!(seen["caller"]["pbc"], "checkout");
    assert_eq!(seen["path"], "/orders/42");
    // Allowed: a signed JSON body reaches the order service as sent.
    let seen = demo.assert_forwarded(
        &reply("header_signed_body"),
        "order",
        CHECKOUT.role_arn,
        ORDER_RULE,
    );
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body"]["quantity"], 1);

    // Denied: catalogue calls nothing.
    let record = demo.assert_refused(&reply("header_denied"), 403, "AccessDenied");
    assert_eq!(
        record["userIdentity"]["accessKeyId"],
        CATALOGUE.access_key_id
    );
    assert_eq!(record["targetPbc"], "order");

    // Tampered: signed for /order/orders/42, sent to /order/orders/43.
    demo.assert_refused(&reply("header_tampered_path"), 403, "SignatureDoesNotMatch");
    // Tampered: the body changed after its SHA-256 was signed in x-amz-content-sha256.
    let record = demo.assert_refused(
        &reply("header_tampered_body"),
        400,
        "XAmzContentSHA256Mismatch",
    );
    assert_eq!(
        record["userIdentity"]["accessKeyId"],
        CHECKOUT.access_key_id
    );

    // --- SigV4QueryAuth, a presigned URL ---
    let url = out["query_url"].as_str().unwrap();
    for param in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=AKIADEMOCHECKOUT0001%2F",
        "X-Amz-Expires=300",
        "X-Amz-SignedHeaders=host",
        "X-Amz-Signature=",
    ] {
        assert!(url.contains(param), "{param} not in {url}");
    }
    // Allowed, and the presign parameters are not forwarded.
    let seen = demo.assert_forwarded(
        &reply("query_allowed"),
        "order",
        CHECKOUT.role_arn,
        ORDER_RULE,
    );
    assert_eq!(seen["path"], "/orders/42", "{seen}");
    let record = demo.audit_record(reply("query_allowed").request_id());
    // The audit log keeps the parameter names, never their values (the signature).
    let logged = record["path"].as_str().unwrap();
    assert!(logged.contains("X-Amz-Signature=REDACTED"), "{record}");
    assert!(
        !logged.contains(url.rsplit('=').next().unwrap()),
        "{record}"
    );

    // Denied.
    demo.assert_refused(&reply("query_denied"), 403, "AccessDenied");
    // Tampered: the path of a presigned URL, and its X-Amz-Expires (300 -> 3600).
    demo.assert_refused(&reply("query_tampered_path"), 403, "SignatureDoesNotMatch");
    demo.assert_refused(
        &reply("query_tampered_expires"),
        403,
        "SignatureDoesNotMatch",
    );
}
