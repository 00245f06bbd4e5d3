//! Chunk-signed bodies (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), checked against the worked
//! example in AWS's S3 documentation ("Signature Calculations for the Authorization Header:
//! Transferring Payload in Multiple Chunks", Example: PUT Object).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use gateway::sigv4::{Body, Code, Credential, Payload, Policy, Request, Secret, Verifier};
use http::{HeaderMap, HeaderValue};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const NOW: i64 = 1_369_353_600; // 2013-05-24T00:00:00Z
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const CHUNK_SIGS: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
         SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
         x-amz-decoded-content-length;x-amz-storage-class,Signature={SEED}"
    );
    h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    h
}

fn body() -> Vec<u8> {
    let mut b = Vec::new();
    for (len, sig) in [
        (65_536usize, CHUNK_SIGS[0]),
        (1024, CHUNK_SIGS[1]),
        (0, CHUNK_SIGS[2]),
    ] {
        b.extend_from_slice(format!("{len:x};chunk-signature={sig}\r\n").as_bytes());
        b.extend(std::iter::repeat_n(b'a', len));
        b.extend_from_slice(b"\r\n");
    }
    assert_eq!(b.len(), 66_824);
    b
}

fn verify(
    headers: &HeaderMap,
    body: Body<'_>,
) -> Result<gateway::sigv4::Verified, gateway::sigv4::Rejection> {
    let verifier = Verifier::new(Policy::new(["us-east-1"], ["s3"]));
    let req = Request {
        method: "PUT",
        path: "/examplebucket/chunkObject.txt",
        query: "",
        headers,
        body,
    };
    let auth = verifier.parse(&req, NOW)?;
    let secret = Secret::from(SECRET);
    verifier.verify(
        &req,
        &auth,
        &Credential {
            secret: &secret,
            expires_at: None,
            allow_unsigned_payload: false,
        },
        NOW,
    )
}

#[test]
fn aws_example_whole_body() {
    let v = verify(&headers(), Body::Bytes(&body())).unwrap();
    match v.payload {
        Payload::Decoded(data) => assert_eq!(data, vec![b'a'; 66_560]),
        other => panic!("{other:?}"),
    }
}

/// Fed in pieces of every size from 1 byte up, the decoder releases exactly the data,
/// and only after each chunk's signature checks out.
#[test]
fn aws_example_streamed_in_pieces() {
    let body = body();
    for piece in [1, 2, 7, 64, 100, 4096, 65_600, 70_000] {
        let v = verify(&headers(), Body::Streaming).unwrap();
        let Payload::Streaming(mut decoder) = v.payload else {
            panic!("expected a decoder")
        };
        let mut out = Vec::new();
        for part in body.chunks(piece) {
            decoder.feed(part, &mut out).unwrap();
            assert!(
                out.is_empty() || out.len() == 65_536 || out.len() == 66_560,
                "released part of a chunk"
            );
        }
        assert_eq!(decoder.finish().unwrap(), 66_560);
        assert_eq!(out, vec![b'a'; 66_560]);
    }
}

#[test]
fn first_bad_chunk_stops_the_stream() {
    let mut body = body();
    // A byte in the second chunk's data.
    let second_data = body.len() - 2 - (86 + 2) - 2 - 1024 + 10;
    body[second_data] = b'b';
    let v = verify(&headers(), Body::Streaming).unwrap();
    let Payload::Streaming(mut decoder) = v.payload else {
        panic!()
    };
    let mut out = Vec::new();
    let err = decoder.feed(&body, &mut out).unwrap_err();
    assert_eq!(err.code(), Code::SignatureDoesNotMatch);
    assert!(err.message().contains("chunk 1"), "{err}");
    assert_eq!(
        out.len(),
        65_536,
        "only the verified first chunk is released"
    );
    // The decoder stays failed.
    assert_eq!(
        decoder.feed(b"", &mut out).unwrap_err().code(),
        Code::SignatureDoesNotMatch
    );
    assert!(decoder.finish().is_err());
}

#[test]
fn reordered_or_truncated_chunks_are_rejected() {
    let body = body();
    // Truncated: the final zero-length chunk is missing.
    let v = verify(&headers(), Body::Streaming).unwrap();
    let Payload::Streaming(mut d) = v.payload else {
        panic!()
    };
    let mut out = Vec::new();
    let cut = body.len() - (86 + 4);
    d.feed(&body[..cut], &mut out).unwrap();
    assert_eq!(d.finish().unwrap_err().code(), Code::IncompleteBody);
    // Whole-body verification of a truncated body fails as well.
    assert_eq!(
        verify(&headers(), Body::Bytes(&body[..cut]))
            .unwrap_err()
            .code(),
        Code::IncompleteBody
    );
    // Trailing bytes after the final chunk.
    let mut extra = body.clone();
    extra.extend_from_slice(b"junk");
    assert_eq!(
        verify(&headers(), Body::Bytes(&extra)).unwrap_err().code(),
        Code::IncompleteBody
    );
}

#[test]
fn decoded_length_must_match() {
    let mut h = headers();
    h.insert(
        "x-amz-decoded-content-length",
        HeaderValue::from_static("66561"),
    );
    // The header is signed, so changing it breaks the seed signature first.
    assert_eq!(
        verify(&h, Body::Bytes(&body())).unwrap_err().code(),
        Code::SignatureDoesNotMatch
    );
}

#[test]
fn malformed_chunk_headers_are_rejected_without_panicking() {
    for bad in [
        &b"zz;chunk-signature=00\r\n"[..],
        b"10000;chunk-signature=short\r\n",
        b"10000;chunk-signature=\r\n",
        b"10000\r\n",
        b"ffffffffffffffffff;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
        b"ffffff;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
        &[b'1'; 500],
    ] {
        let v = verify(&headers(), Body::Streaming).unwrap();
        let Payload::Streaming(mut d) = v.payload else { panic!() };
        let mut out = Vec::new();
        let err = d.feed(bad, &mut out).unwrap_err();
        assert_eq!(err.code(), Code::IncompleteBody, "{}", String::from_utf8_lossy(bad));
        assert!(out.is_empty());
    }
}
