//! `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: a body sent as signed chunks, each signature
//! chained to the one before, starting from the request's own. The decoder is fed bytes
//! as they arrive and releases a chunk's data only once that chunk's signature checks
//! out; the first bad chunk stops it for good.

use std::fmt;

use super::secret::ct_eq;
use hmac::Mac;
use sha2::{Digest, Sha256};

use super::encode::{decode_hex, put_hex};
use super::keys::HmacSha256;
use super::{Code, Rejection};

/// SHA-256 of the empty string, hex: every chunk's string to sign carries it.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Longest chunk header we read: hex size, `;chunk-signature=`, 64 hex digits.
const MAX_HEADER_LINE: usize = 16 + 17 + 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading `<hex size>;chunk-signature=<sig>\r\n`.
    Header,
    /// Reading the chunk's data.
    Data,
    /// Expecting `\r` then `\n` after the data.
    DataCr,
    DataLf,
    /// The zero-length chunk was verified.
    Done,
}

/// Incremental decoder and verifier of a chunk-signed body.
pub struct ChunkDecoder {
    mac: HmacSha256,
    /// `AWS4-HMAC-SHA256-PAYLOAD\n<time>\n<scope>\n`.
    prefix: Vec<u8>,
    previous: [u8; 32],
    state: State,
    line: Vec<u8>,
    data: Vec<u8>,
    remaining: usize,
    chunk_signature: [u8; 32],
    chunk_index: u64,
    decoded: u64,
    expected_length: Option<u64>,
    max_chunk_size: usize,
    failed: Option<Rejection>,
}

impl fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkDecoder")
            .field("state", &self.state)
            .field("chunk_index", &self.chunk_index)
            .field("decoded", &self.decoded)
            .field("expected_length", &self.expected_length)
            .finish_non_exhaustive()
    }
}

impl ChunkDecoder {
    /// A decoder whose first chunk chains to `seed_signature` (the request's signature),
    /// signed with `mac` (keyed with the request's signing key).
    pub(crate) fn new(
        mac: HmacSha256,
        time_iso: &str,
        scope: &str,
        seed_signature: [u8; 32],
        expected_length: Option<u64>,
        max_chunk_size: usize,
    ) -> Self {
        let mut prefix = Vec::with_capacity(26 + time_iso.len() + scope.len() + 2);
        prefix.extend_from_slice(b"AWS4-HMAC-SHA256-PAYLOAD\n");
        prefix.extend_from_slice(time_iso.as_bytes());
        prefix.push(b'\n');
        prefix.extend_from_slice(scope.as_bytes());
        prefix.push(b'\n');
        Self {
            mac,
            prefix,
            previous: seed_signature,
            state: State::Header,
            line: Vec::with_capacity(MAX_HEADER_LINE),
            data: Vec::new(),
            remaining: 0,
            chunk_signature: [0; 32],
            chunk_index: 0,
            decoded: 0,
            expected_length,
            max_chunk_size,
            failed: None,
        }
    }

    /// Feeds the next bytes of the body; appends the data of every chunk completed and
    /// verified by them to `out`. After an error every further call returns it again.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Rejection> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.feed_inner(input, out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Ends the body: fails unless the final (zero-length) chunk arrived and the decoded
    /// length matches `x-amz-decoded-content-length`. Returns the decoded length.
    pub fn finish(&self) -> Result<u64, Rejection> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.state != State::Done {
            return Err(incomplete(format!(
                "The chunk-signed body ended after {} chunk(s) without its final zero-length chunk.",
                self.chunk_index
            )));
        }
        Ok(self.decoded)
    }

    /// Whether the final chunk has been verified.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of verified data released so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    fn feed_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Rejection> {
        while let Some((&b, rest)) = input.split_first() {
            match self.state {
                State::Header => {
                    input = rest;
                    if b == b'\n' {
                        self.start_chunk()?;
                        if self.remaining == 0 {
                            self.state = State::DataCr;
                        }
                    } else if self.line.len() > MAX_HEADER_LINE {
                        return Err(incomplete(format!(
                            "Chunk {} has a header longer than {MAX_HEADER_LINE} bytes.",
                            self.chunk_index
                        )));
                    } else {
                        self.line.push(b);
                    }
                }
                State::Data => {
                    let take = self.remaining.min(input.len());
                    let (now, later) = input.split_at(take);
                    self.data.extend_from_slice(now);
                    self.remaining -= take;
                    input = later;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr | State::DataLf => {
                    let want = if self.state == State::DataCr {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if b != want {
                        return Err(incomplete(format!(
                            "Chunk {} is not followed by CRLF; its declared size does not match its data.",
                            self.chunk_index
                        )));
                    }
                    input = rest;
                    if self.state == State::DataCr {
                        self.state = State::DataLf;
                    } else {
                        self.end_chunk(out)?;
                    }
                }
                State::Done => {
                    return Err(incomplete(
                        "The chunk-signed body has data after its final zero-length chunk.",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parses `<hex size>;chunk-signature=<64 hex>\r` from the header line.
    fn start_chunk(&mut self) -> Result<(), Rejection> {
        let index = self.chunk_index;
        let bad = || {
            incomplete(format!(
                "Chunk {index} has a malformed header; expected '<hex size>;chunk-signature=<64 hex digits>'."
            ))
        };
        let line = std::str::from_utf8(&self.line).map_err(|_| bad())?;
        let line = line.strip_suffix('\r').ok_or_else(bad)?;
        let (size, signature) = line.split_once(";chunk-signature=").ok_or_else(bad)?;
        if size.is_empty() || size.len() > 16 {
            return Err(bad());
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| bad())?;
        let size = usize::try_from(size).ok().filter(|&s| s <= self.max_chunk_size).ok_or_else(|| {
            incomplete(format!(
                "Chunk {index} declares {size} bytes, more than the {} bytes this gateway accepts per chunk.",
                self.max_chunk_size
            ))
        })?;
        self.chunk_signature = decode_hex::<32>(signature).ok_or_else(bad)?;
        self.line.clear();
        self.data.clear();
        self.data.reserve(size);
        self.remaining = size;
        self.state = State::Data;
        Ok(())
    }

    fn end_chunk(&mut self, out: &mut Vec<u8>) -> Result<(), Rejection> {
        let mut mac = self.mac.clone();
        mac.update(&self.prefix);
        put_hex(&mut MacSink(&mut mac), &self.previous);
        mac.update(b"\n");
        mac.update(EMPTY_SHA256_HEX.as_bytes());
        mac.update(b"\n");
        let digest: [u8; 32] = Sha256::digest(&self.data).into();
        put_hex(&mut MacSink(&mut mac), &digest);
        let computed: [u8; 32] = mac.finalize().into_bytes().into();
        if !ct_eq(&computed, &self.chunk_signature) {
            return Err(Rejection::new(
                Code::SignatureDoesNotMatch,
                format!(
                    "The signature of chunk {} does not match: the body was altered in transit or signed \
                     with another key or seed signature.",
                    self.chunk_index
                ),
            ));
        }
        // Never release more than the declared length, even verified: a receiver
        // that trusts the declared length must not see bytes past it.
        if let Some(expected) = self.expected_length
            && self.decoded + self.data.len() as u64 > expected
        {
            return Err(incomplete(format!(
                "The chunk-signed body is longer than x-amz-decoded-content-length ({expected} bytes)."
            )));
        }
        self.previous = computed;
        self.chunk_index += 1;
        let final_chunk = self.data.is_empty();
        self.decoded += self.data.len() as u64;
        out.extend_from_slice(&self.data);
        self.data.clear();
        if final_chunk {
            if let Some(expected) = self.expected_length
                && expected != self.decoded
            {
                return Err(incomplete(format!(
                    "The chunk-signed body decoded to {} bytes but x-amz-decoded-content-length says {expected}.",
                    self.decoded
                )));
            }
            self.state = State::Done;
        } else {
            self.state = State::Header;
        }
        Ok(())
    }
}

fn incomplete(message: impl Into<String>) -> Rejection {
    Rejection::new(Code::IncompleteBody, message)
}

/// Lets the hex writer feed a MAC.
pub(crate) struct MacSink<'a>(pub(crate) &'a mut HmacSha256);

impl super::encode::Sink for MacSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
