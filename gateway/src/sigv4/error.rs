//! Every way the verification core rejects a request, each with its AWS error code.

use std::fmt;

/// The AWS error code of a rejection. The gateway puts it in `x-amzn-ErrorType` and in
/// the error body; `status` gives the HTTP status AWS uses for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// No `Authorization` header and no presigned query parameters.
    MissingAuthenticationToken,
    /// The signature is present but malformed or lacks a required part.
    IncompleteSignature,
    /// The access key id (or session token) is unknown.
    InvalidClientTokenId,
    /// The signature (or a streaming chunk signature) does not match.
    SignatureDoesNotMatch,
    /// A presigned request is past its `X-Amz-Expires`.
    RequestExpired,
    /// The request time is outside the clock-skew window.
    RequestTimeTooSkewed,
    /// The session credentials have expired.
    ExpiredToken,
    /// `x-amz-content-sha256` does not match the body, or is not a value we accept.
    XAmzContentSHA256Mismatch,
    /// The signature is valid but policy forbids the request.
    AccessDenied,
    /// A streaming (chunk-signed) body is malformed or cut short.
    IncompleteBody,
}

impl Code {
    /// The code as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MissingAuthenticationToken => "MissingAuthenticationToken",
            Code::IncompleteSignature => "IncompleteSignature",
            Code::InvalidClientTokenId => "InvalidClientTokenId",
            Code::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Code::RequestExpired => "RequestExpired",
            Code::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Code::ExpiredToken => "ExpiredToken",
            Code::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            Code::AccessDenied => "AccessDenied",
            Code::IncompleteBody => "IncompleteBody",
        }
    }

    /// The HTTP status AWS answers this code with.
    pub fn status(self) -> u16 {
        match self {
            Code::IncompleteSignature
            | Code::RequestExpired
            | Code::ExpiredToken
            | Code::XAmzContentSHA256Mismatch
            | Code::IncompleteBody => 400,
            Code::MissingAuthenticationToken
            | Code::InvalidClientTokenId
            | Code::SignatureDoesNotMatch
            | Code::RequestTimeTooSkewed
            | Code::AccessDenied => 403,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway computed for a request whose signature did not match: AWS returns
/// the same two strings so a caller can diff them against its own signer's. The session
/// token's value is shown as `<redacted>` (AWS shows it; this gateway keeps tokens out
/// of error bodies and logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureDetail {
    /// The canonical request, as the gateway built it.
    pub canonical_request: String,
    /// The string to sign, as the gateway built it.
    pub string_to_sign: String,
}

/// A rejected request: an AWS error code and a message a person can act on. Messages
/// never contain a secret, a session token or the expected signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    code: Code,
    message: String,
    detail: Option<Box<SignatureDetail>>,
}

impl Rejection {
    /// A rejection with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// `IncompleteSignature` with a message.
    pub fn incomplete(message: impl Into<String>) -> Self {
        Self::new(Code::IncompleteSignature, message)
    }

    /// `InvalidClientTokenId`, for an identity source that does not know the key.
    pub fn unknown_access_key(access_key_id: &str) -> Self {
        Self::new(
            Code::InvalidClientTokenId,
            format!(
                "The security token included in the request is invalid: access key id \
                 '{access_key_id}' is not known to this gateway. Check the credentials the caller signs with."
            ),
        )
    }

    /// `SignatureDoesNotMatch`, carrying what the gateway computed.
    pub(crate) fn signature_mismatch(canonical_request: String, string_to_sign: String) -> Self {
        Self {
            code: Code::SignatureDoesNotMatch,
            message: "The request signature we calculated does not match the signature you provided. \
                      Check your AWS Secret Access Key and signing method: compare the canonical request \
                      and string to sign below with your signer's."
                .to_owned(),
            detail: Some(Box::new(SignatureDetail { canonical_request, string_to_sign })),
        }
    }

    /// The AWS error code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The HTTP status for this rejection.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For `SignatureDoesNotMatch` on the request signature: what the gateway computed.
    pub fn signature_detail(&self) -> Option<&SignatureDetail> {
        self.detail.as_deref()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(
                f,
                "\n\nThe canonical request for this request should have been\n'{}'\n\nThe string to sign should have been\n'{}'",
                d.canonical_request, d.string_to_sign
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}
