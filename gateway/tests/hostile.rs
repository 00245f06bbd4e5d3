//! Hostile clients against the real gateway (in-process, 127.0.0.1, real TLS): request
//! smuggling, slow clients, oversized requests, malformed and ambiguous signatures, an
//! untrusted client certificate, HTTP/2 rapid reset.
//!
//! Every case asserts the answer (a 4xx with its AWS error code, or the connection
//! closed where HTTP demands it), never a 5xx; that the upstreams saw nothing (not a
//! request, not even a connection); and that the gateway keeps serving afterwards (a
//! normal signed request still succeeds). No timing is asserted: timeouts are only
//! "eventually" bounds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use bytes::Bytes;
use common::{REGION, signed};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use mesh::{
    CHECKOUT, Mesh, Options, PATIENCE, parse_raw, raw_head, read_to_close, responses, rss_kib,
    write_lossy,
};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

fn get(mesh: &Mesh, path: &str) -> Request<Full<Bytes>> {
    signed(
        CHECKOUT,
        "GET",
        &mesh.url(path),
        b"",
        SystemTime::now(),
        REGION,
    )
}

fn post(mesh: &Mesh, path: &str, body: &[u8]) -> Request<Full<Bytes>> {
    signed(
        CHECKOUT,
        "POST",
        &mesh.url(path),
        body,
        SystemTime::now(),
        REGION,
    )
}

/// Writes `bytes` on a fresh TLS (HTTP/1.1) connection and reads until the gateway closes
/// it; returns everything the gateway sent.
async fn raw_exchange(mesh: &Mesh, bytes: &[u8]) -> Vec<u8> {
    let mut tls = mesh.tls_connect(&[b"http/1.1"]).await;
    write_lossy(&mut tls, bytes).await;
    read_to_close(&mut tls).await
}

/// The `Authorization` header of a signed request, split into its three parts.
fn auth_parts(req: &Request<Full<Bytes>>) -> (String, String, String) {
    let auth = req.headers()["authorization"].to_str().unwrap();
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").unwrap();
    let mut parts = rest.split(", ");
    let cred = parts.next().unwrap().strip_prefix("Credential=").unwrap();
    let signed_headers = parts
        .next()
        .unwrap()
        .strip_prefix("SignedHeaders=")
        .unwrap();
    let sig = parts.next().unwrap().strip_prefix("Signature=").unwrap();
    (cred.into(), signed_headers.into(), sig.into())
}

fn authorization(cred: &[u8], signed_headers: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut v = b"AWS4-HMAC-SHA256 Credential=".to_vec();
    v.extend_from_slice(cred);
    v.extend_from_slice(b", SignedHeaders=");
    v.extend_from_slice(signed_headers);
    v.extend_from_slice(b", Signature=");
    v.extend_from_slice(sig);
    v
}

/// A signed GET's head with its `Authorization` value replaced by raw bytes.
fn head_with_authorization(req: &Request<Full<Bytes>>, auth: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        req.method(),
        req.uri().path_and_query().unwrap()
    )
    .into_bytes();
    for (name, value) in req.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        if name == "authorization" {
            head.extend_from_slice(auth);
        } else {
            head.extend_from_slice(value.as_bytes());
        }
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

/// Asserts a raw answer is a 4xx (never 5xx, never nothing) and returns (status, code).
fn four_xx(got: &[u8], what: &str) -> (u16, String) {
    let (status, code) = parse_raw(got);
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got: {}",
        String::from_utf8_lossy(got)
    );
    (status, code)
}

// ---------------------------------------------------------------------------------------
// Request smuggling

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_is_refused_and_the_connection_closed() {
    let mesh = Mesh::start("smuggle", Options::default()).await;
    // A smuggled second request: what a proxy reading the other framing would forward.
    let smuggled = raw_head(&get(&mesh, "/order/orders/smuggled"));

    // 1. Content-Length and Transfer-Encoding: chunked. The signed body is the chunked
    //    encoding's first chunk; what follows the terminating chunk is the smuggled
    //    request, which a reader going by Content-Length would take as body.
    let body = b"{\"qty\":1}";
    let req = post(&mesh, "/order/orders", body);
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    for te_first in [true, false] {
        let mut bytes = raw_head(&req);
        bytes.truncate(bytes.len() - 2);
        let cl = format!("content-length: {}\r\n", chunked.len() + smuggled.len());
        let te = "transfer-encoding: chunked\r\n";
        let framing = if te_first {
            format!("{te}{cl}")
        } else {
            format!("{cl}{te}")
        };
        bytes.extend_from_slice(framing.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&chunked);
        bytes.extend_from_slice(&smuggled);
        let got = raw_exchange(&mesh, &bytes).await;
        // RFC 9112 6.3 lets a server either refuse this or read the body by
        // Transfer-Encoding and then close the connection. hyper does the latter (and
        // drops the Content-Length before the gateway sees the request, so the gateway
        // cannot tell it from a plain chunked request): the signed chunk is the whole
        // body, and the bytes after the last chunk are never read as a request.
        let (status, _) = parse_raw(&got);
        assert!(
            status == 400 || status == 200,
            "CL + TE: {}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(responses(&got), 1, "the smuggled request was answered");
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(
            status == 400 || text.contains("connection: close"),
            "CL + TE: the connection must not be reused: {text}"
        );
    }
    let seen = mesh.order.requests();
    assert!(
        seen.iter()
            .all(|s| s.body.as_ref() == body && s.uri.ends_with("/orders")),
        "CL + TE: the upstream saw more than the signed chunk: {seen:?}"
    );
    assert!(
        !seen.iter().any(|s| s.uri.contains("smuggled")),
        "the smuggled request reached the upstream"
    );
    // From here on, nothing may reach an upstream.
    let mark = mesh.mark();

    // 2. Two different Content-Lengths (and the same one twice, which RFC 9110 allows
    //    a recipient to fold but an upstream may not).
    let req = post(&mesh, "/order/orders", body);
    let mut bytes = raw_head(&req);
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(
        format!(
            "content-length: {}\r\ncontent-length: {}\r\n\r\n",
            body.len(),
            body.len() + smuggled.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&smuggled);
    let got = raw_exchange(&mesh, &bytes).await;
    let (status, _) = four_xx(&got, "two Content-Lengths");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&got));
    assert_eq!(responses(&got), 1, "the smuggled request was answered");
    // "9, 40" in one field.
    let mut bytes = raw_head(&req);
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(
        format!(
            "content-length: {}, {}\r\n\r\n",
            body.len(),
            body.len() + smuggled.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&smuggled);
    let got = raw_exchange(&mesh, &bytes).await;
    let (status, _) = four_xx(&got, "a Content-Length list");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&got));
    assert_eq!(responses(&got), 1, "the smuggled request was answered");

    // 3. obs-fold: a header continued on the next line (RFC 9112 5.2: reject or unfold;
    //    an unfolding proxy and a non-unfolding upstream would disagree on the headers).
    let req = get(&mesh, "/order/orders/1");
    let mut bytes = raw_head(&req);
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(b"x-folded: first\r\n  transfer-encoding: chunked\r\n\r\n");
    let got = raw_exchange(&mesh, &bytes).await;
    let (status, _) = four_xx(&got, "obs-fold");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&got));

    // 4. Transfer-Encoding other than chunked (e.g. "chunked, identity" or a bare
    //    "identity"): HTTP/1.1 cannot frame it; refused.
    let req = post(&mesh, "/order/orders", body);
    let mut bytes = raw_head(&req);
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(b"transfer-encoding: identity\r\n\r\n");
    bytes.extend_from_slice(body);
    let got = raw_exchange(&mesh, &bytes).await;
    four_xx(&got, "TE: identity");

    mesh.saw_nothing_since(mark, "request smuggling");
    mesh.still_serving("request smuggling").await;
    mesh.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Slow clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_and_other_clients_are_unaffected() {
    let mesh = Mesh::start(
        "slowloris",
        Options {
            limits: "header_read_timeout_ms = 1000".into(),
            ..Options::default()
        },
    )
    .await;
    let req = get(&mesh, "/order/orders/slow");
    let mut head = raw_head(&req);
    // Long enough that trickling all of it takes far longer than the timeout.
    head.truncate(head.len() - 2);
    head.extend_from_slice(format!("x-pad: {}\r\n\r\n", "p".repeat(400)).as_bytes());
    let total = head.len();
    let mut tls = mesh.tls_connect(&[b"http/1.1"]).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        for b in head {
            if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    });
    // Meanwhile another client is served.
    mesh.still_serving("a slowloris client connected").await;
    // (The trickled head cannot be complete yet: from here on nothing may arrive.)
    let mark = mesh.mark();
    let got = read_to_close(&mut rd).await;
    assert!(
        !got.starts_with(b"HTTP/1.1 2"),
        "the trickled request was served: {}",
        String::from_utf8_lossy(&got)
    );
    let sent = tokio::time::timeout(PATIENCE, trickle)
        .await
        .unwrap()
        .unwrap();
    assert!(
        sent < total,
        "the whole head ({total} bytes) was accepted byte by byte"
    );
    // A silent client and a stalled second head on the same mesh: the same.
    tls = mesh.tls_connect(&[b"http/1.1"]).await;
    let got = read_to_close(&mut tls).await;
    assert!(got.is_empty() || !got.starts_with(b"HTTP/1.1 2"));
    mesh.saw_nothing_since(mark, "slowloris");
    mesh.still_serving("slowloris").await;
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_request_timeout_gets_504_and_reaches_nothing() {
    let mesh = Mesh::start(
        "slowbody",
        Options {
            limits: "request_timeout_ms = 1000".into(),
            ..Options::default()
        },
    )
    .await;
    let mark = mesh.mark();
    let body = vec![b'x'; 200];
    let req = post(&mesh, "/order/orders", &body);
    let mut tls = mesh.tls_connect(&[b"http/1.1"]).await;
    let whole = mesh::raw_request(&req, &body);
    tls.write_all(&whole[..whole.len() - 180]).await.unwrap();
    tls.flush().await.unwrap();
    // ... and nothing more: the gateway answers 504 GatewayTimeout (and may close).
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::io::AsyncReadExt::read(&mut tls, &mut buf)
                .await
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no answer to a stalled body");
    let (status, code) = parse_raw(&got);
    assert_eq!(
        (status, code.as_str()),
        (504, "GatewayTimeout"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The same over HTTP/2: a stream whose body stalls after its first frame.
    let tls = mesh.tls_connect(&[b"h2"]).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (parts, _) = post(&mesh, "/order/orders", &body).into_parts();
    let mut parts = parts;
    parts.version = http::Version::HTTP_2;
    parts
        .headers
        .insert("content-length", HeaderValue::from(body.len()));
    let stalled = Request::from_parts(parts, Stall(Some(Bytes::from(body[..20].to_vec()))));
    let resp = tokio::time::timeout(PATIENCE, sender.send_request(stalled))
        .await
        .expect("no answer to a stalled HTTP/2 body")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(resp.headers()["x-amzn-errortype"], "GatewayTimeout");
    mesh.saw_nothing_since(mark, "slow body");
    mesh.still_serving("a slow body").await;
    mesh.shutdown().await;
}

/// A request body that sends one frame and then never another, nor its end.
struct Stall(Option<Bytes>);

impl http_body::Body for Stall {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(data) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
            None => std::task::Poll::Pending,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Size limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_headers_uri_and_body_get_431_414_413() {
    let mesh = Mesh::start(
        "oversize",
        Options {
            limits: "max_body_bytes = 4096\nmax_uri_bytes = 2048\nmax_header_bytes = 16384".into(),
            ..Options::default()
        },
    )
    .await;
    let mark = mesh.mark();
    for http2 in [false, true] {
        let client = mesh.client(http2);
        let proto = if http2 { "h2" } else { "h1" };

        // URI: 414 RequestURITooLong.
        let long = format!("/order/orders/{}", "a".repeat(3000));
        let a = mesh::answer(client.request(get(&mesh, &long))).await;
        a.expect(
            StatusCode::URI_TOO_LONG,
            "RequestURITooLong",
            &format!("{proto}: long URI"),
        );

        // Body: 413 RequestEntityTooLarge (signed, so buffered to check its hash).
        let big = vec![b'b'; 5000];
        let a = mesh::answer(client.request(post(&mesh, "/order/orders", &big))).await;
        a.expect(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("{proto}: big body"),
        );

        // Headers: 431 (HTTP/1: hyper refuses while parsing and closes; HTTP/2: the
        // header list limit refuses the stream or the gateway answers 431).
        let mut req = get(&mesh, "/order/orders/1");
        req.headers_mut()
            .insert("x-big", HeaderValue::from_str(&"h".repeat(20_000)).unwrap());
        match client.request(req).await {
            Ok(resp) => assert_eq!(
                resp.status(),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{proto}: big header"
            ),
            Err(e) => assert!(http2, "{proto}: big header: {e:?}"),
        }
    }
    // The same over raw HTTP/1.1: the 431 is the whole answer and the connection closes.
    let req = get(&mesh, "/order/orders/1");
    let mut bytes = raw_head(&req);
    bytes.truncate(bytes.len() - 2);
    bytes.extend_from_slice(format!("x-big: {}\r\n\r\n", "h".repeat(20_000)).as_bytes());
    let got = raw_exchange(&mesh, &bytes).await;
    assert_eq!(
        four_xx(&got, "raw big header").0,
        431,
        "{}",
        String::from_utf8_lossy(&got)
    );
    mesh.saw_nothing_since(mark, "oversize");
    mesh.still_serving("oversize requests").await;
    mesh.shutdown().await;
}

/// A signed request with `n` query parameters.
fn many_params(mesh: &Mesh, n: usize) -> Request<Full<Bytes>> {
    let mut query = String::with_capacity(n * 8);
    for i in 0..n {
        if i > 0 {
            query.push('&');
        }
        query.push_str(&format!("p{}=v", i % 10));
    }
    get(mesh, &format!("/order/orders/1?{query}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_query_parameters_and_thousands_of_repeated_headers_are_bounded() {
    // URI limit raised so the 10,000 parameters reach the SigV4 core, which bounds them.
    let mesh = Mesh::start(
        "many",
        Options {
            limits: "max_uri_bytes = 262144\nmax_header_bytes = 262144".into(),
            ..Options::default()
        },
    )
    .await;
    let mark = mesh.mark();
    let before = rss_kib();
    for round in 0..5 {
        for http2 in [false, true] {
            let client = mesh.client(http2);
            let a = mesh::answer(client.request(many_params(&mesh, 10_000))).await;
            a.expect(
                StatusCode::BAD_REQUEST,
                "IncompleteSignature",
                &format!("10,000 query parameters (round {round}, h2 {http2})"),
            );
            assert!(a.body.contains("parameters"), "{}", a.body);

            // One header repeated 5,000 times: over max_headers (100).
            let mut req = get(&mesh, "/order/orders/1");
            for _ in 0..5_000 {
                req.headers_mut()
                    .append("x-repeat", HeaderValue::from_static("r"));
            }
            match client.request(req).await {
                Ok(resp) => assert_eq!(
                    resp.status(),
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "repeated header (h2 {http2})"
                ),
                // HTTP/2 may refuse the stream outright.
                Err(e) => assert!(http2, "repeated header: {e:?}"),
            }
        }
    }
    // Just under the header count: a header repeated 90 times is verified normally
    // (signed or not, it is joined and checked, never a 5xx).
    let mut req = get(&mesh, "/order/orders/1");
    for _ in 0..90 {
        req.headers_mut()
            .append("x-repeat", HeaderValue::from_static("r"));
    }
    let a = mesh.send(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 200,
        "RSS grew by {grown_mib} MiB over 10 rounds of hostile requests"
    );
    let mark_after_ok = mesh.mark();
    assert_eq!(
        mark_after_ok[0].1,
        mark[0].1 + 1,
        "only the one well-formed request reached the upstream"
    );
    mesh.still_serving("many parameters and headers").await;
    mesh.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The Authorization header, taken apart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_every_part_of_the_authorization_header_is_a_4xx() {
    let mesh = Mesh::start("authparts", Options::default()).await;
    let mark = mesh.mark();
    let req = get(&mesh, "/order/orders/1");
    let (cred, sh, sig) = auth_parts(&req);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (label, bad) in [
        ("invalid UTF-8", b"\xff\xfe\xc3(".to_vec()),
        ("NUL", b"a\x00b".to_vec()),
        ("overlong UTF-8", b"\xc0\xaf".to_vec()),
        ("DEL", b"\x7f".to_vec()),
    ] {
        let mut c = cred.as_bytes().to_vec();
        c.splice(4..4, bad.iter().copied());
        cases.push((
            format!("{label} in Credential's key id"),
            authorization(&c, sh.as_bytes(), sig.as_bytes()),
        ));
        let mut c = cred.as_bytes().to_vec();
        let at = c.len() - 5;
        c.splice(at..at, bad.iter().copied());
        cases.push((
            format!("{label} in Credential's scope"),
            authorization(&c, sh.as_bytes(), sig.as_bytes()),
        ));
        let mut s = sh.as_bytes().to_vec();
        s.splice(2..2, bad.iter().copied());
        cases.push((
            format!("{label} in SignedHeaders"),
            authorization(cred.as_bytes(), &s, sig.as_bytes()),
        ));
        let mut g = sig.as_bytes().to_vec();
        g.splice(10..10, bad.iter().copied());
        cases.push((
            format!("{label} in Signature"),
            authorization(cred.as_bytes(), sh.as_bytes(), &g),
        ));
        let mut g = sig.as_bytes()[..sig.len() - bad.len()].to_vec();
        g.extend_from_slice(&bad);
        cases.push((
            format!("{label} in Signature, length kept"),
            authorization(cred.as_bytes(), sh.as_bytes(), &g),
        ));
        let mut a = b"AWS4-HMAC-SHA256".to_vec();
        a.extend_from_slice(&bad);
        a.extend_from_slice(&authorization(cred.as_bytes(), sh.as_bytes(), sig.as_bytes())[16..]);
        cases.push((format!("{label} in the algorithm"), a));
    }
    for (what, auth) in &cases {
        let got = raw_exchange(&mesh, &head_with_authorization(&req, auth)).await;
        let (status, code) = four_xx(&got, what);
        // A byte HTTP forbids (NUL, DEL) is refused by the parser (400, no code); the rest
        // reach the SigV4 core, which names the problem.
        if code.is_empty() {
            assert_eq!(status, 400, "{what}");
        } else {
            assert!(
                [
                    "IncompleteSignature",
                    "InvalidClientTokenId",
                    "SignatureDoesNotMatch"
                ]
                .contains(&code.as_str()),
                "{what}: {code}"
            );
        }
    }
    mesh.saw_nothing_since(mark, "garbage in Authorization");
    mesh.still_serving("garbage in Authorization").await;
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_ambiguous_signatures_get_their_codes() {
    let mesh = Mesh::start("ambiguous", Options::default()).await;
    let mark = mesh.mark();
    let req = get(&mesh, "/order/orders/1");
    let (cred, sh, sig) = auth_parts(&req);
    let with_auth = |auth: Vec<u8>| {
        let mut r = get(&mesh, "/order/orders/1");
        // Same second, same signature: only the part under test differs.
        r.headers_mut()
            .insert("x-amz-date", req.headers()["x-amz-date"].clone());
        r.headers_mut()
            .insert("authorization", HeaderValue::from_bytes(&auth).unwrap());
        r
    };
    let (akid, scope) = cred.split_once('/').unwrap();
    let scope_parts: Vec<&str> = scope.split('/').collect();
    let cases: Vec<(&str, Request<Full<Bytes>>, StatusCode, &str)> = vec![
        (
            "a signature one hex digit short",
            with_auth(authorization(
                cred.as_bytes(),
                sh.as_bytes(),
                &sig.as_bytes()[..63],
            )),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "a signature one hex digit long",
            with_auth(authorization(
                cred.as_bytes(),
                sh.as_bytes(),
                format!("{sig}0").as_bytes(),
            )),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "a signature of 10,000 hex digits",
            with_auth(authorization(
                cred.as_bytes(),
                sh.as_bytes(),
                "a".repeat(10_000).as_bytes(),
            )),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "another signature, in upper case",
            with_auth(authorization(
                cred.as_bytes(),
                sh.as_bytes(),
                format!(
                    "{}{}",
                    &sig[..63],
                    if sig.ends_with('0') { '1' } else { '0' }
                )
                .to_uppercase()
                .as_bytes(),
            )),
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
        ),
        (
            "a scope with an extra part",
            with_auth(authorization(
                format!(
                    "{akid}/{}/extra/{}",
                    scope_parts[..3].join("/"),
                    scope_parts[3]
                )
                .as_bytes(),
                sh.as_bytes(),
                sig.as_bytes(),
            )),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "a scope without its service",
            with_auth(authorization(
                format!(
                    "{akid}/{}/{}/{}",
                    scope_parts[0], scope_parts[1], scope_parts[3]
                )
                .as_bytes(),
                sh.as_bytes(),
                sig.as_bytes(),
            )),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "a scope without aws4_request",
            with_auth(authorization(
                format!("{akid}/{}", scope_parts[..3].join("/")).as_bytes(),
                sh.as_bytes(),
                sig.as_bytes(),
            )),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "a credential that is only a key id",
            with_auth(authorization(
                akid.as_bytes(),
                sh.as_bytes(),
                sig.as_bytes(),
            )),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "an empty SignedHeaders",
            with_auth(authorization(cred.as_bytes(), b"", sig.as_bytes())),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
        (
            "Signature given twice",
            with_auth(
                [
                    authorization(cred.as_bytes(), sh.as_bytes(), sig.as_bytes()),
                    b", Signature=".to_vec(),
                    sig.as_bytes().to_vec(),
                ]
                .concat(),
            ),
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ),
    ];
    let mut cases = cases;

    // A presigned URL that also carries an Authorization header.
    let mut both = presigned(&mesh, "/order/orders/1", "");
    both.headers_mut()
        .insert("authorization", req.headers()["authorization"].clone());
    both.headers_mut()
        .insert("x-amz-date", req.headers()["x-amz-date"].clone());
    cases.push((
        "presigned and an Authorization header",
        both,
        StatusCode::BAD_REQUEST,
        "IncompleteSignature",
    ));
    // Duplicate X-Amz-* query keys: a second signature or date after the signed ones.
    for dup in [
        "X-Amz-Signature",
        "X-Amz-Date",
        "X-Amz-Credential",
        "X-Amz-Expires",
    ] {
        let good = presigned(&mesh, "/order/orders/1", "");
        let uri = good.uri().to_string();
        let value = uri
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{dup}=")))
            .unwrap()
            .to_string();
        let mut twice = good;
        *twice.uri_mut() = format!("{uri}&{dup}={value}").parse().unwrap();
        cases.push((
            Box::leak(format!("{dup} twice in the query").into_boxed_str()),
            twice,
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
        ));
    }
    // A Host other than the one signed.
    let mut moved = get(&mesh, "/order/orders/1");
    moved
        .headers_mut()
        .insert("host", HeaderValue::from_static("order.internal:443"));
    cases.push((
        "Host differs from the signed one",
        moved,
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
    ));

    for (what, req, status, code) in cases {
        let a = mesh.send(req).await;
        a.expect(status, code, what);
    }
    mesh.saw_nothing_since(mark, "malformed signatures");
    // The right signature in upper case is the same 32 bytes: hex is read in either
    // case (so a replay cache keyed on the bytes sees one signature), and it is served.
    let upper = with_auth(authorization(
        cred.as_bytes(),
        sh.as_bytes(),
        sig.to_uppercase().as_bytes(),
    ));
    let a = mesh.send(upper).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(mesh.order.requests().len(), mark[0].1 + 1);
    mesh.still_serving("malformed signatures").await;
    mesh.shutdown().await;
}

/// A GET presigned (signature in the query) for 60 seconds; `extra_query` is signed too.
fn presigned(mesh: &Mesh, path: &str, extra_query: &str) -> Request<Full<Bytes>> {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let mut settings = SigningSettings::default();
    settings.signature_location = aws_sigv4::http_request::SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let identity = Credentials::new(CHECKOUT.0, CHECKOUT.1, None, None, "hostile").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(mesh::SERVICE)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = if extra_query.is_empty() {
        mesh.url(path)
    } else {
        mesh.url(&format!("{path}?{extra_query}"))
    };
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let headers = [("host", host.as_str())];
    let signable = SignableRequest::new(
        "GET",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::get(&url)
        .header("host", host.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_formed_presigned_url_is_served() {
    // The control for the duplicate-key cases above: the same URL, once, works.
    let mesh = Mesh::start("presigned", Options::default()).await;
    let a = mesh
        .send(presigned(&mesh, "/order/orders/1", "view=full"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = mesh.order.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].uri.contains("X-Amz-"),
        "presign parameters reached the upstream: {}",
        seen[0].uri
    );
    mesh.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_an_untrusted_ca_is_refused_at_the_handshake() {
    let mesh = Mesh::start(
        "mtls",
        Options {
            mtls: true,
            ..Options::default()
        },
    )
    .await;
    let mark = mesh.mark();
    let rogue_ca = mesh::Ca::new("rogue CA");
    let rogue = rogue_ca.client("checkout");
    for (what, client) in [
        ("a certificate from another CA", Some(&rogue)),
        ("no certificate", None),
    ] {
        let config = mesh::client_tls(&mesh.ca.pem, client, &[b"http/1.1"]);
        let tcp = tokio::net::TcpStream::connect(mesh.addr()).await.unwrap();
        let connected = tokio_rustls::TlsConnector::from(config)
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await;
        // TLS 1.3: the client may finish its side before the server refuses; then the
        // refusal arrives on the first read, and no HTTP answer ever does.
        if let Ok(mut tls) = connected {
            write_lossy(&mut tls, &raw_head(&get(&mesh, "/order/orders/1"))).await;
            let got = read_to_close(&mut tls).await;
            assert!(
                got.is_empty(),
                "{what}: got an HTTP answer: {}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    // Counted, by reason.
    let mut counted = 0.0;
    for _ in 0..100 {
        let metrics = mesh.metrics().await;
        counted = metrics
            .lines()
            .find(|l| l.starts_with("gateway_tls_handshake_errors_total{reason=\"failed\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if counted >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted >= 2.0, "handshake errors counted: {counted}");
    mesh.saw_nothing_since(mark, "untrusted client certificate");
    mesh.still_serving("untrusted client certificates").await;
    mesh.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// HTTP/2 rapid reset (CVE-2023-44487)

fn gauge(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_bounded_and_the_gateway_keeps_serving() {
    let mesh = Mesh::start("rapidreset", Options::default()).await;
    let before_rss = rss_kib();
    let mut streams = 0usize;
    let mut refused_connections = 0usize;
    // Connections of many streams each, every stream cancelled (RST_STREAM CANCEL) as
    // soon as it is sent. The requests are signed and allowed, and the upstream would
    // take seconds to answer: any work the gateway does not cancel piles up.
    for _ in 0..10 {
        let tls = mesh.tls_connect(&[b"h2"]).await;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        let conn = tokio::spawn(conn);
        for _ in 0..500 {
            if sender.ready().await.is_err() {
                refused_connections += 1;
                break;
            }
            let req = get(&mesh, "/order/slow/3000");
            let (parts, body) = req.into_parts();
            let fut = sender.send_request(Request::from_parts(parts, body));
            // Let it reach the wire, then cancel.
            let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
            streams += 1;
        }
        drop(sender);
        let _ = tokio::time::timeout(PATIENCE, conn).await;
    }
    assert!(streams > 0);
    // The gateway cancels the upstream work of every reset stream: nothing stays in
    // flight, and the upstream saw a bounded number of connections (a pool, not one
    // per stream).
    let mut in_flight = f64::MAX;
    for _ in 0..200 {
        let m = mesh.metrics().await;
        in_flight = gauge(&m, "gateway_upstream_requests_in_flight{target=\"order\"}");
        if in_flight == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(in_flight, 0.0, "upstream requests still in flight");
    assert!(
        mesh.order.connections() <= 50,
        "{} upstream connections for {streams} streams",
        mesh.order.connections()
    );
    let grown_mib = rss_kib().saturating_sub(before_rss) / 1024;
    assert!(grown_mib < 200, "RSS grew by {grown_mib} MiB");
    eprintln!(
        "rapid reset: {streams} streams sent, {refused_connections} connections closed by the gateway, {} reached the upstream",
        mesh.order.requests().len()
    );
    // Still serving, over HTTP/2 too.
    mesh.still_serving("rapid reset").await;
    let client = mesh.client(true);
    let a = mesh::answer(client.request(get(&mesh, "/order/orders/after"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    mesh.shutdown().await;
}
