//! `curl --aws-sigv4` (curl 7.75+) against the real gateway binary: header signing
//! with static keys, and with session credentials from the gateway's STS (fetched by
//! curl too) sent in `x-amz-security-token`. Each: an allowed call, a denied call and
//! a tampered call, checked against the gateway's audit record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use client_e2e::{
    CATALOGUE, CHECKOUT, Demo, Identity, ORDER_PATH, ORDER_RULE, REGION, Reply, SERVICE,
    SESSION_RULE, STS_ROLE, STS_SERVICE, assumed_role_arn, flip_char, xml_field,
};
use std::process::Command;

/// `curl` itself, checked once: it must know `--aws-sigv4`.
fn curl() -> Command {
    let out = Command::new("curl")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!("curl is not installed ({e}): scripts/test installs it (apt-get install curl)")
        });
    let version = String::from_utf8_lossy(&out.stdout);
    let (major, minor) = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next()?))
        })
        .unwrap_or_else(|| panic!("cannot read curl's version from:\n{version}"));
    assert!(
        (major, minor) >= (7, 75),
        "curl {major}.{minor} has no --aws-sigv4 (7.75 or later needed):\n{version}"
    );
    Command::new("curl")
}

/// Runs `curl -sS -i --cacert CA args...` and parses what it printed.
fn run(demo: &Demo, args: &[&str]) -> Reply {
    let out = curl()
        .args(["-sS", "-i", "--cacert"])
        .arg(demo.ca())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Reply::from_curl(&String::from_utf8_lossy(&out.stdout))
}

/// `--aws-sigv4 "aws:amz:REGION:SERVICE" --user KEY:SECRET`, as the README prints it.
fn sigv4(service: &str, key: &str, secret: &str) -> [String; 4] {
    [
        "--aws-sigv4".into(),
        format!("aws:amz:{REGION}:{service}"),
        "--user".into(),
        format!("{key}:{secret}"),
    ]
}

/// A GET signed by curl with a demo identity's static key.
fn get(demo: &Demo, who: Identity, secret: &str, path: &str) -> Reply {
    let auth = sigv4(SERVICE, who.access_key_id, secret);
    let url = demo.at(path);
    let mut args: Vec<&str> = auth.iter().map(String::as_str).collect();
    args.push(&url);
    run(demo, &args)
}

#[test]
fn static_keys_allowed_denied_and_tampered() {
    let demo = Demo::start("curl-static");

    // Allowed: checkout reads an order (rule checkout-manages-orders); the order
    // service saw checkout's role in the gateway's identity assertion.
    let ok = get(&demo, CHECKOUT, CHECKOUT.secret, ORDER_PATH);
    let seen = demo.assert_forwarded(&ok, "order", CHECKOUT.role_arn, ORDER_RULE);
    assert_eq!(seen["caller"]["pbc"], "checkout");
    assert_eq!(seen["caller"]["access_key_id"], CHECKOUT.access_key_id);
    assert_eq!(seen["path"], "/orders/42");

    // Denied: catalogue may call nothing (default deny); the order service never saw it.
    let denied = get(&demo, CATALOGUE, CATALOGUE.secret, ORDER_PATH);
    let record = demo.assert_refused(&denied, 403, "AccessDenied");
    assert_eq!(record["targetPbc"], "order");
    assert_eq!(record["userIdentity"]["callerPbc"], "catalogue");
    assert!(
        record.get("rule").is_none(),
        "a default deny names no rule: {record}"
    );
    assert!(
        denied.json()["message"]
            .as_str()
            .unwrap()
            .contains("because no rule allows it"),
        "{denied}"
    );

    // Denied by an explicit deny rule, which beats checkout's allow.
    let auth = sigv4(SERVICE, CHECKOUT.access_key_id, CHECKOUT.secret);
    let url = demo.at(ORDER_PATH);
    let mut args: Vec<&str> = auth.iter().map(String::as_str).collect();
    args.extend(["-X", "DELETE", &url]);
    let delete = run(&demo, &args);
    let record = demo.assert_refused(&delete, 403, "AccessDenied");
    assert_eq!(record["rule"], "no-order-deletes", "{record}");

    // Tampered: signed with a wrong secret.
    let wrong = get(
        &demo,
        CHECKOUT,
        "not+the+checkout+secret+at+all",
        ORDER_PATH,
    );
    let record = demo.assert_refused(&wrong, 403, "SignatureDoesNotMatch");
    assert_eq!(
        record["userIdentity"]["accessKeyId"],
        CHECKOUT.access_key_id
    );
    // The gateway tells the caller what it computed, as AWS does.
    assert!(
        wrong
            .body
            .contains("The Canonical String for this request should have been"),
        "{wrong}"
    );

    // Tampered: the headers of a request curl signed, replayed on another path.
    let (authorization, date) = signed_headers(&demo, ORDER_PATH);
    let other = demo.at("/order/orders/43");
    let replay = run(
        &demo,
        &[
            "-H",
            &format!("authorization: {authorization}"),
            "-H",
            &format!("x-amz-date: {date}"),
            &other,
        ],
    );
    demo.assert_refused(&replay, 403, "SignatureDoesNotMatch");
    // The gateway computed the canonical request over the path it received.
    let message = replay.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("'GET\n/order/orders/43\n"), "{replay}");
}

/// The `authorization` and `x-amz-date` headers curl signs a GET of `path` with (read
/// from `curl -v`).
fn signed_headers(demo: &Demo, path: &str) -> (String, String) {
    let out = curl()
        .args(["-sS", "-v", "-o", "/dev/null", "--cacert"])
        .arg(demo.ca())
        .args(sigv4(SERVICE, CHECKOUT.access_key_id, CHECKOUT.secret))
        .arg(demo.at(path))
        .output()
        .unwrap();
    let trace = String::from_utf8_lossy(&out.stderr);
    let header = |name: &str| {
        trace
            .lines()
            .filter_map(|l| l.strip_prefix("> "))
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("curl sent no {name}:\n{trace}"))
    };
    (header("authorization"), header("x-amz-date"))
}

/// Session credentials from the gateway's STS, as curl gets them: a signed
/// `AssumeRole` form POST to `/sts` (service `sts`), XML back.
fn assume_role(demo: &Demo, who: Identity, session: &str) -> Reply {
    let auth = sigv4(STS_SERVICE, who.access_key_id, who.secret);
    let form = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={STS_ROLE}&RoleSessionName={session}"
    );
    let url = demo.sts_url();
    let mut args: Vec<&str> = auth.iter().map(String::as_str).collect();
    args.extend(["--data", &form, &url]);
    run(demo, &args)
}

#[test]
fn session_credentials_from_sts_allowed_denied_and_tampered() {
    let demo = Demo::start("curl-session");

    // Catalogue may not assume the role: STS answers in XML, as AWS STS does.
    let refused = assume_role(&demo, CATALOGUE, "curl-catalogue");
    assert_eq!(refused.status, 403, "{refused}");
    assert_eq!(xml_field(&refused.body, "Code"), "AccessDenied");
    let record = demo.audit_record(refused.request_id());
    assert_eq!(record["eventType"], "StsAction");
    assert_eq!(record["eventName"], "AssumeRole");
    assert_eq!(record["errorCode"], "AccessDenied");

    // Checkout may.
    let issued = assume_role(&demo, CHECKOUT, "curl-session");
    assert_eq!(issued.status, 200, "{issued}");
    let key = xml_field(&issued.body, "AccessKeyId").to_string();
    let secret = xml_field(&issued.body, "SecretAccessKey").to_string();
    let token = xml_field(&issued.body, "SessionToken").to_string();
    assert!(key.starts_with("ASIA"), "{issued}");
    assert_eq!(
        xml_field(&issued.body, "Arn"),
        assumed_role_arn("curl-session")
    );
    let record = demo.audit_record(issued.request_id());
    assert_eq!(record["sts"]["issuedAccessKeyId"], key.as_str(), "{record}");

    // curl signs the x-amz-security-token header it is given.
    let call = |token: &str, extra: &[&str], path: &str| {
        let auth = sigv4(SERVICE, &key, &secret);
        let header = format!("x-amz-security-token: {token}");
        let url = demo.at(path);
        let mut args: Vec<&str> = auth.iter().map(String::as_str).collect();
        args.extend(["-H", &header]);
        args.extend(extra);
        args.push(&url);
        run(&demo, &args)
    };

    // Allowed: the session reads an order (rule checkout-to-order-role).
    let ok = call(&token, &[], ORDER_PATH);
    let seen = demo.assert_forwarded(
        &ok,
        "order",
        &assumed_role_arn("curl-session"),
        SESSION_RULE,
    );
    assert_eq!(seen["caller"]["access_key_id"], key.as_str());
    assert_eq!(seen["caller"]["role_arn"], STS_ROLE);

    // Denied: the role's sessions manage orders and nothing else.
    let denied = call(
        &token,
        &["-H", "content-type: application/json", "--data", "{}"],
        "/payment/payments",
    );
    let record = demo.assert_refused(&denied, 403, "AccessDenied");
    assert_eq!(record["targetPbc"], "payment");
    assert_eq!(
        record["userIdentity"]["principalArn"],
        assumed_role_arn("curl-session")
    );

    // Tampered: one character of the session token changed. The token is sealed by
    // the gateway: it no longer authenticates, whatever the signature.
    let altered = flip_char(&token, token.len() / 2);
    assert_ne!(altered, token);
    let tampered = call(&altered, &[], ORDER_PATH);
    let record = demo.assert_refused(&tampered, 403, "InvalidClientTokenId");
    assert_eq!(record["userIdentity"]["accessKeyId"], key.as_str());

    // The session key without its token.
    let auth = sigv4(SERVICE, &key, &secret);
    let url = demo.at(ORDER_PATH);
    let mut args: Vec<&str> = auth.iter().map(String::as_str).collect();
    args.push(&url);
    let tokenless = run(&demo, &args);
    demo.assert_refused(&tokenless, 403, "InvalidClientTokenId");
}
