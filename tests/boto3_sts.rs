//! boto3's STS client from PyPI against the real gateway binary's STS (`<gateway>/sts`,
//! only the endpoint URL and CA bundle set): AssumeRole allowed, denied and tampered,
//! and GetCallerIdentity with the credentials it issued. `py/boto3_sts.py` makes the
//! calls; this test asserts on them and on the gateway's audit records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use client_e2e::{
    CATALOGUE, CHECKOUT, Demo, STS_ROLE, assert_refused_record, assumed_role_arn, python,
    run_python_json,
};

#[test]
fn assume_role_allowed_denied_and_tampered_and_the_session_works() {
    let demo = Demo::start("boto3-sts");
    let py = python(&["boto3"]);
    let ca = demo.ca().to_str().unwrap();
    let out = run_python_json(&py, "boto3_sts.py", &[demo.url(), ca]);

    // The static key's own identity.
    assert_eq!(out["static_identity"]["arn"], CHECKOUT.role_arn, "{out}");
    assert_eq!(out["static_identity"]["account"], "111122223333");

    // Allowed: checkout assumes CheckoutToOrderRole.
    let assumed = &out["assumed"];
    assert_eq!(assumed["arn"], assumed_role_arn("boto3-session"), "{out}");
    let key = assumed["access_key_id"].as_str().unwrap();
    assert!(key.starts_with("ASIA"), "{out}");
    assert_eq!(assumed["has_secret"], true);
    assert_eq!(assumed["has_token"], true);
    let record = demo.audit_record(assumed["request_id"].as_str().unwrap());
    assert_eq!(record["eventType"], "StsAction", "{record}");
    assert_eq!(record["eventName"], "AssumeRole", "{record}");
    assert_eq!(record["decision"], "Allow", "{record}");
    assert_eq!(
        record["userIdentity"]["accessKeyId"],
        CHECKOUT.access_key_id
    );
    assert_eq!(record["sts"]["roleArn"], STS_ROLE);
    assert_eq!(record["sts"]["roleSessionName"], "boto3-session");
    assert_eq!(record["sts"]["issuedAccessKeyId"], key);

    // GetCallerIdentity with the issued credentials names the session.
    assert_eq!(
        out["session_identity"]["arn"],
        assumed_role_arn("boto3-session"),
        "{out}"
    );
    assert!(
        out["session_identity"]["user_id"]
            .as_str()
            .unwrap()
            .ends_with(":boto3-session"),
        "{out}"
    );

    // Denied: the trust policy does not name catalogue. boto3 raises ClientError with
    // the code from the XML error.
    let denied = &out["denied"];
    assert_eq!(denied["code"], "AccessDenied", "{out}");
    assert_eq!(denied["status"], 403);
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("CataloguePBCRole is not authorized to perform: sts:AssumeRole"),
        "{out}"
    );
    let record = demo.audit_record(denied["request_id"].as_str().unwrap());
    assert_refused_record(&record, 403, "AccessDenied");
    assert_eq!(
        record["userIdentity"]["accessKeyId"],
        CATALOGUE.access_key_id
    );
    assert!(record["sts"].get("issuedAccessKeyId").is_none(), "{record}");

    // Tampered: a wrong secret.
    let wrong = &out["wrong_secret"];
    assert_eq!(wrong["code"], "SignatureDoesNotMatch", "{out}");
    assert_eq!(wrong["status"], 403);
    let record = demo.audit_record(wrong["request_id"].as_str().unwrap());
    assert_refused_record(&record, 403, "SignatureDoesNotMatch");
    assert!(record["sts"].get("issuedAccessKeyId").is_none(), "{record}");

    // Tampered: the session token with one character changed.
    let token = &out["tampered_token"];
    assert_eq!(token["code"], "InvalidClientTokenId", "{out}");
    assert_eq!(token["status"], 403);
    let record = demo.audit_record(token["request_id"].as_str().unwrap());
    assert_refused_record(&record, 403, "InvalidClientTokenId");
    assert_eq!(record["userIdentity"]["accessKeyId"], key);
}
