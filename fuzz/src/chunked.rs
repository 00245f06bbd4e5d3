//! `chunked`: the `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` decoder (`ChunkDecoder`).
//!
//! Each input signs a streaming request with `aws-sigv4` (the decoder comes from the
//! gateway's own `verify`, the only public way to get one), builds a body of chunks signed
//! with `aws-sigv4`'s `sign_chunk`, then edits the bytes on the wire (bad signatures,
//! wrong or odd sizes, bare LF, extensions, garbage, a missing final chunk, ...). The body
//! is fed to fresh decoders whole, in fuzz-chosen pieces, and one byte at a time, and
//! given whole to `verify` as `Body::Bytes`. Checked:
//!
//! - however the bytes are split, the decoder releases the same data, fails with the same
//!   error at the same point, and `finish` says the same (split invariance), and the
//!   whole-body path agrees;
//! - released data is always the data of the first k chunks as signed, and never goes
//!   past the first chunk whose signature was spoiled;
//! - a body left unedited, with a right (or no) declared length, decodes to its chunks;
//! - a decoder that failed keeps failing; a finished one refuses more data;
//!   `decoded_len` is what was released.

use arbitrary::{Arbitrary, Result, Unstructured};
use aws_sigv4::http_request::SignatureLocation;
use aws_sigv4::sign::v4;
use gateway::sigv4::{ChunkDecoder, Code, Credential, Payload, Verifier};
use http::HeaderName;

use crate::{
    Owned, PayloadMode, SignSpec, check_rejection, identity, secret, sign_request, signing_unix,
    v4_params, verifiers,
};

pub fn run(data: &[u8]) {
    let _ = one(&mut Unstructured::new(data));
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Edit<'a> {
    None,
    /// Flips one hex digit of the chunk signature.
    BadSignature(u8),
    /// Declares a size off by this much.
    SizeDelta(i8),
    /// Uppercase hex size.
    SizeUpper,
    /// Leading zeros on the size.
    SizeZeros(u8),
    /// `\n` instead of `\r\n` after the header.
    HeaderBareLf,
    /// `\n` instead of `\r\n` after the data.
    DataBareLf,
    /// A chunk extension before the signature.
    Extension,
    /// Bytes inserted after the chunk.
    Garbage(&'a [u8]),
    /// The chunk header only (no data, no CRLF).
    Truncate,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Declared {
    Right,
    Absent,
    Wrong(u16),
}

fn chunk_bytes(data: &[u8], signature: &str, edit: Edit<'_>) -> Vec<u8> {
    let size = data.len();
    let size_text = match edit {
        Edit::SizeDelta(d) => format!("{:x}", (size as i64 + i64::from(d)).max(0)),
        Edit::SizeUpper => format!("{size:X}"),
        Edit::SizeZeros(n) => format!("{}{size:x}", "0".repeat(usize::from(n % 20))),
        _ => format!("{size:x}"),
    };
    let mut sig = signature.to_owned();
    if let Edit::BadSignature(at) = edit {
        let i = usize::from(at) % sig.len().max(1);
        let c = sig.as_bytes()[i];
        let flipped = if c == b'0' { '1' } else { '0' };
        sig.replace_range(i..=i, &flipped.to_string());
    }
    let ext = if edit == Edit::Extension {
        ";ext=1"
    } else {
        ""
    };
    let header_end = if edit == Edit::HeaderBareLf {
        "\n"
    } else {
        "\r\n"
    };
    let mut out = format!("{size_text}{ext};chunk-signature={sig}{header_end}").into_bytes();
    if edit == Edit::Truncate {
        return out;
    }
    out.extend_from_slice(data);
    out.extend_from_slice(if edit == Edit::DataBareLf {
        b"\n"
    } else {
        b"\r\n"
    });
    if let Edit::Garbage(g) = edit {
        out.extend_from_slice(g);
    }
    out
}

/// What a decoder made of a body.
#[derive(Debug, PartialEq)]
struct Fed {
    out: Vec<u8>,
    /// The error of the feed that failed, if one did.
    feed_error: Option<(Code, String)>,
    finish: std::result::Result<u64, (Code, String)>,
    done: bool,
}

fn feed(mut d: Box<ChunkDecoder>, body: &[u8], pieces: &[usize]) -> Fed {
    let mut out = Vec::new();
    let mut rest = body;
    let mut feed_error = None;
    for &n in pieces.iter().chain(std::iter::once(&usize::MAX)) {
        let (piece, later) = rest.split_at(n.min(rest.len()));
        rest = later;
        if let Err(e) = d.feed(piece, &mut out) {
            check_rejection(&e);
            feed_error = Some((e.code(), e.message().to_owned()));
            break;
        }
        if rest.is_empty() {
            break;
        }
    }
    assert_eq!(
        d.decoded_len(),
        out.len() as u64,
        "decoded_len is not what was released"
    );
    let finish = d.finish().map_err(|e| {
        check_rejection(&e);
        (e.code(), e.message().to_owned())
    });
    if let Some((code, _)) = &feed_error {
        // A failed decoder keeps failing, with the same error.
        assert_eq!(finish.as_ref().err().map(|e| e.0), Some(*code));
        let again = d.feed(b"0;chunk-signature=", &mut out);
        assert_eq!(again.err().map(|e| e.code()), Some(*code));
    }
    let done = d.is_done();
    if let Ok(n) = finish {
        assert!(done);
        assert_eq!(n, out.len() as u64);
        // After the final chunk, nothing more is accepted.
        assert!(d.feed(b"x", &mut Vec::new()).is_err());
    }
    Fed {
        out,
        feed_error,
        finish,
        done,
    }
}

fn decoder(v: &Verifier, req: &Owned, credential: &Credential<'_>) -> Option<Box<ChunkDecoder>> {
    let r = req.request(true);
    let auth = v
        .parse(&r, signing_unix())
        .map_err(|e| check_rejection(&e))
        .ok()?;
    match v.verify(&r, &auth, credential, signing_unix()) {
        Ok(verified) => match verified.payload {
            Payload::Streaming(d) => Some(d),
            other => panic!("a streaming request verified as {other:?}"),
        },
        Err(e) => {
            check_rejection(&e);
            None
        }
    }
}

fn one(u: &mut Unstructured<'_>) -> Result<()> {
    let n = u.int_in_range(0..=6u8)?;
    let mut chunks: Vec<(&[u8], Edit<'_>)> = Vec::new();
    for _ in 0..n {
        let data: &[u8] = u.arbitrary()?;
        if data.is_empty() {
            continue;
        }
        let edit = if u.ratio(3, 4)? {
            Edit::None
        } else {
            u.arbitrary()?
        };
        chunks.push((data, edit));
    }
    let final_edit: Option<Edit<'_>> = if u.ratio(1, 10)? {
        None
    } else if u.ratio(4, 5)? {
        Some(Edit::None)
    } else {
        Some(u.arbitrary()?)
    };
    let trailing: &[u8] = if u.ratio(1, 10)? { u.arbitrary()? } else { &[] };
    let declared: Declared = if u.ratio(3, 4)? {
        Declared::Right
    } else {
        u.arbitrary()?
    };
    let pieces: Vec<usize> = u
        .arbitrary::<Vec<u8>>()?
        .into_iter()
        .map(usize::from)
        .collect();

    let data: Vec<u8> = chunks.iter().flat_map(|(d, _)| d.iter().copied()).collect();
    let mut headers = Vec::new();
    match declared {
        Declared::Right => headers.push((
            HeaderName::from_static("x-amz-decoded-content-length"),
            data.len().to_string(),
        )),
        Declared::Wrong(n) => headers.push((
            HeaderName::from_static("x-amz-decoded-content-length"),
            n.to_string(),
        )),
        Declared::Absent => {}
    }
    let spec = SignSpec {
        s3: true,
        v4a: false,
        region_set: "",
        location: SignatureLocation::Headers,
        payload: PayloadMode::HashHeader,
        streaming: true,
        expires: 0,
        token: None,
    };
    let Some((mut req, seed)) = sign_request(&spec, "PUT", "/bucket/object", "", &headers, &[])
    else {
        return Ok(());
    };
    let id = identity(None);
    let Some(params) = v4_params(&spec, &id) else {
        return Ok(());
    };
    let mut body = Vec::new();
    let mut previous = seed;
    let final_chunk = final_edit.map(|e| (&[][..], e));
    for (c, edit) in chunks.iter().copied().chain(final_chunk) {
        let Ok(out) = v4::sign_chunk(&bytes::Bytes::copy_from_slice(c), &previous, &params) else {
            return Ok(());
        };
        let (_, sig) = out.into_parts();
        body.extend_from_slice(&chunk_bytes(c, &sig, edit));
        previous = sig;
    }
    body.extend_from_slice(trailing);
    req.body = body;

    let credential = Credential {
        secret: secret(),
        expires_at: None,
        allow_unsigned_payload: false,
    };
    let clean = chunks.iter().all(|(_, e)| *e == Edit::None)
        && final_edit == Some(Edit::None)
        && trailing.is_empty()
        && !matches!(declared, Declared::Wrong(n) if usize::from(n) != data.len());
    // The index of the first chunk whose signature was spoiled: no data from it on.
    let spoiled = chunks
        .iter()
        .position(|(_, e)| matches!(e, Edit::BadSignature(_)))
        .unwrap_or(chunks.len());

    for (i, v) in verifiers().iter().enumerate() {
        let Some(d1) = decoder(v, &req, &credential) else {
            assert!(
                i == 1,
                "the default verifier refused a request aws-sigv4 signed"
            );
            continue;
        };
        let whole = feed(d1, &req.body, &[]);
        crate::count(if whole.finish.is_ok() {
            &crate::STATS.streamed_accepted
        } else {
            &crate::STATS.streamed_rejected
        });
        let Some(d2) = decoder(v, &req, &credential) else {
            unreachable!()
        };
        let split = feed(d2, &req.body, &pieces);
        assert_eq!(
            whole, split,
            "feeding in pieces {pieces:?} changed the outcome"
        );
        if req.body.len() <= 4096 {
            let Some(d3) = decoder(v, &req, &credential) else {
                unreachable!()
            };
            let ones = vec![1; req.body.len()];
            let bytewise = feed(d3, &req.body, &ones);
            assert_eq!(whole, bytewise, "feeding byte by byte changed the outcome");
        }

        // Released data is the data of the first k chunks, k before any spoiled one.
        let mut prefix = Vec::new();
        let mut k_ok = whole.out.is_empty();
        for (c, _) in chunks.iter().take(spoiled) {
            prefix.extend_from_slice(c);
            k_ok |= prefix == whole.out;
        }
        assert!(
            k_ok,
            "released data is not a run of whole signed chunks: {whole:?}"
        );

        // The whole-body path says the same.
        let r = req.request(false);
        let auth = v.parse(&r, signing_unix()).unwrap();
        match v.verify(&r, &auth, &credential, signing_unix()) {
            Ok(verified) => match verified.payload {
                Payload::Decoded(out) => {
                    assert!(
                        whole.finish.is_ok(),
                        "whole body accepted, streamed refused"
                    );
                    assert_eq!(out, whole.out);
                }
                other => panic!("a chunk-signed body verified as {other:?}"),
            },
            Err(e) => {
                let streamed = whole.feed_error.clone().or(whole.finish.clone().err());
                assert_eq!(Some((e.code(), e.message().to_owned())), streamed);
            }
        }

        if clean && (i == 0 || chunks.iter().all(|(c, _)| c.len() <= 64)) {
            assert_eq!(
                whole.finish,
                Ok(data.len() as u64),
                "a clean body was refused: {whole:?}"
            );
            assert_eq!(whole.out, data);
        }
    }
    Ok(())
}
