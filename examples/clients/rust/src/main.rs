//! `pbc-client`: how a PBC calls another PBC through the SigV4 gateway, in Rust.
//!
//! Every call is an ordinary HTTPS request signed with AWS Signature Version 4 by the
//! `aws-sigv4` crate, the signer the AWS SDKs use. There is nothing gateway-specific in
//! the signing: the gateway is one more AWS-style endpoint (region `eu-west-1`, service
//! `execute-api` in the demo). The steps, each a function below:
//!
//! 1. [`credentials`]: the PBC's access key from the environment (`AWS_ACCESS_KEY_ID`,
//!    `AWS_SECRET_ACCESS_KEY`, and `AWS_SESSION_TOKEN` for session credentials), as
//!    every AWS SDK reads them; or, with `--assume-role`, a session from the gateway's
//!    STS ([`assume_role`]: a signed `AssumeRole` POST to `<gateway>/sts`).
//! 2. [`sign`]: sign method, URL, `content-type` and the body's SHA-256 (sent as
//!    `x-amz-content-sha256`, so the gateway checks the body it received against it).
//! 3. [`Client::send`]: send it over TLS (HTTP/2 or HTTP/1.1), trusting the mesh's CA.
//! 4. [`main`]: print the status and the body; on an error answer print the AWS error
//!    code (`x-amzn-ErrorType`) and message, and exit with 1.
//!
//! The gateway routes by the first path segment: `/order/orders/42` reaches the order
//! PBC as `/orders/42`, if the allow matrix lets the caller's role do it.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign as sigv4_sign,
};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

const EXAMPLES: &str = "\
Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (for session
credentials) AWS_SESSION_TOKEN. Prints the status line and the body; exits 1 on a
non-2xx answer, printing the AWS error code and message, and 2 when there is no answer
to print (no credentials, a TLS or connection failure, --assume-role refused).

Examples, against `gateway demo` (it prints its port and CA path):

  export AWS_ACCESS_KEY_ID=AKIADEMOCHECKOUT0001
  export AWS_SECRET_ACCESS_KEY=demo+checkout+secret+key+not+for+production

  # checkout reads an order: 200 and the order service's JSON
  pbc-client --ca /tmp/sigv4-gateway-demo/ca.pem https://127.0.0.1:8443 GET /order/orders/42

  # checkout creates an order, with a JSON body
  pbc-client --ca /tmp/sigv4-gateway-demo/ca.pem https://127.0.0.1:8443 POST /order/orders '{\"sku\":\"sku-1\"}'

  # checkout deletes an order: 403 AccessDenied (rule no-order-deletes), exit status 1
  pbc-client --ca /tmp/sigv4-gateway-demo/ca.pem https://127.0.0.1:8443 DELETE /order/orders/42

  # first assume a role through the gateway's STS, then call with that session
  pbc-client --ca /tmp/sigv4-gateway-demo/ca.pem \\
      --assume-role arn:aws:iam::111122223333:role/CheckoutToOrderRole \\
      https://127.0.0.1:8443 GET /order/orders/42";

/// Call a PBC through the SigV4 gateway: sign the request with the aws-sigv4 crate,
/// send it over TLS, print the answer.
#[derive(Debug, Parser)]
#[command(name = "pbc-client", version, after_help = EXAMPLES)]
struct Args {
    /// The gateway's base URL, e.g. https://127.0.0.1:8443
    gateway: String,
    /// The HTTP method: GET, POST, PUT, DELETE, ...
    method: String,
    /// The path on the gateway, `/<target PBC>/<path at the target>[?query]`, e.g.
    /// /order/orders/42
    path: String,
    /// The request body; `@FILE` reads it from FILE
    body: Option<String>,
    /// The CA bundle (PEM) to trust for the gateway's certificate [default: $AWS_CA_BUNDLE,
    /// else /etc/ssl/certs/ca-certificates.crt]
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// The SigV4 region the gateway accepts
    #[arg(long, default_value = "eu-west-1")]
    region: String,
    /// The SigV4 service the gateway accepts
    #[arg(long, default_value = "execute-api")]
    service: String,
    /// The body's content type (signed)
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Assume this role through the gateway's STS (`<gateway>/sts`) first, and call with
    /// the session it returns
    #[arg(long, value_name = "ROLE_ARN")]
    assume_role: Option<String>,
    /// The session name for --assume-role
    #[arg(long, default_value = "pbc-client")]
    role_session_name: String,
    /// Print the response headers too
    #[arg(short = 'i', long)]
    include: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pbc-client: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> Result<ExitCode, String> {
    let client = Client::new(&ca_bundle(args.ca.as_deref())?)?;
    let gateway = args.gateway.trim_end_matches('/');
    let mut creds = credentials()?;
    if let Some(role) = &args.assume_role {
        creds = assume_role(
            &client,
            gateway,
            &args.region,
            &creds,
            role,
            &args.role_session_name,
        )
        .await?;
        eprintln!(
            "pbc-client: assumed {role} as session {} (access key {})",
            args.role_session_name,
            creds.access_key_id()
        );
    }

    let body = match args.body.as_deref() {
        Some(b) => match b.strip_prefix('@') {
            Some(file) => std::fs::read(file).map_err(|e| format!("{file}: {e}"))?,
            None => b.as_bytes().to_vec(),
        },
        None => Vec::new(),
    };
    let url = format!("{gateway}{}", args.path);
    let content_type = (!body.is_empty()).then_some(args.content_type.as_str());
    let request = sign(
        &creds,
        &args.region,
        &args.service,
        &args.method,
        &url,
        content_type,
        body,
    )?;
    let answer = client.send(request).await?;

    println!("{}", answer.status);
    if args.include {
        for (name, value) in &answer.headers {
            println!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
        println!();
    }
    println!("{}", String::from_utf8_lossy(&answer.body));
    if answer.status.is_success() {
        return Ok(ExitCode::SUCCESS);
    }
    let (code, message) = aws_error(&answer);
    let request_id = answer
        .headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    eprintln!(
        "pbc-client: {} {code}: {message} (request id {request_id})",
        answer.status.as_u16()
    );
    Ok(ExitCode::FAILURE)
}

/// Step 1: static or session credentials from the environment, as the AWS SDKs read
/// them. (A real PBC might get them from its platform instead: the gateway's STS with
/// a Kubernetes service-account token, or its AWS role through the gateway's bridge.)
fn credentials() -> Result<Credentials, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        return Err(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for \
             session credentials)"
                .into(),
        );
    };
    Ok(Credentials::new(
        key,
        secret,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

/// Step 2: a request signed with SigV4 for `region` and `service`. The signer adds
/// `authorization`, `x-amz-date`, `x-amz-content-sha256` and, for session credentials,
/// `x-amz-security-token`. `host` is signed from the URL; hyper sends the same value
/// (`Host` over HTTP/1.1, `:authority` over HTTP/2).
fn sign(
    creds: &Credentials,
    region: &str,
    service: &str,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<http::Request<Full<Bytes>>, String> {
    let mut settings = SigningSettings::default();
    // Sign the body's hash and send it: the gateway compares it with the body it got.
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = creds.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("content-type", ct))
        .into_iter()
        .collect();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(&body),
    )
    .map_err(|e| format!("cannot sign {method} {url}: {e}"))?;
    let (instructions, _signature) = sigv4_sign(signable, &params)
        .map_err(|e| format!("cannot sign {method} {url}: {e}"))?
        .into_parts();

    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in &headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{method} {url}: {e}"))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

/// `--assume-role`: the gateway's STS speaks the AWS Query protocol, like AWS STS. An
/// `AssumeRole` call is a form POST to `<gateway>/sts`, signed for service `sts`; the
/// answer is XML with the session's access key id, secret and token. (The AWS SDKs'
/// STS clients do exactly this with the endpoint URL set to `<gateway>/sts`; it is
/// written out here to keep this example to the signer alone.)
async fn assume_role(
    client: &Client,
    gateway: &str,
    region: &str,
    creds: &Credentials,
    role_arn: &str,
    session_name: &str,
) -> Result<Credentials, String> {
    let form = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={}",
        form_encode(role_arn),
        form_encode(session_name)
    );
    let request = sign(
        creds,
        region,
        "sts",
        "POST",
        &format!("{gateway}/sts"),
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        form.into_bytes(),
    )?;
    let answer = client.send(request).await?;
    let xml = String::from_utf8_lossy(&answer.body);
    if !answer.status.is_success() {
        let (code, message) = aws_error(&answer);
        return Err(format!(
            "AssumeRole {role_arn}: {} {code}: {message}",
            answer.status.as_u16()
        ));
    }
    let field = |tag: &str| {
        xml_text(&xml, tag).ok_or_else(|| format!("AssumeRole: no <{tag}> in the answer: {xml}"))
    };
    Ok(Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        Some(field("SessionToken")?),
        None,
        "gateway-sts",
    ))
}

/// The AWS error code and message of an error answer: the gateway sends the code in
/// `x-amzn-ErrorType` and a JSON body `{"code","message","requestId"}`; its STS sends
/// XML `<Error><Code>..</Code><Message>..</Message></Error>`.
fn aws_error(answer: &Answer) -> (String, String) {
    let text = String::from_utf8_lossy(&answer.body);
    let header = answer
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
        let code = json
            .get("code")
            .and_then(|c| c.as_str())
            .map(str::to_string);
        let message = json.get("message").and_then(|m| m.as_str()).unwrap_or("");
        return (
            header.or(code).unwrap_or_else(|| "-".into()),
            message.to_string(),
        );
    }
    let code = header.or_else(|| xml_text(&text, "Code"));
    let message = xml_text(&text, "Message").unwrap_or_default();
    (code.unwrap_or_else(|| "-".into()), message)
}

/// The text of the first `<tag>...</tag>`, XML entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    let (value, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(
        value
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `application/x-www-form-urlencoded` value encoding (RFC 3986 unreserved kept).
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `--ca`, else `$AWS_CA_BUNDLE` (what the AWS SDKs and CLI read), else the system
/// bundle.
fn ca_bundle(ca: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(ca) = ca {
        return Ok(ca.to_path_buf());
    }
    if let Some(env) = std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(env));
    }
    let system = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if system.is_file() {
        return Ok(system.to_path_buf());
    }
    Err("give the CA bundle that signed the gateway's certificate with --ca".into())
}

/// An answer, read whole.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

/// Step 3: an HTTPS client (hyper, rustls with ring) that trusts only the given CA
/// bundle and speaks HTTP/2 or HTTP/1.1, whichever the gateway picks (ALPN).
struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl Client {
    fn new(ca: &Path) -> Result<Client, String> {
        use rustls_pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("CA bundle {}: {e}", ca.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("CA bundle {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA bundle {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("CA bundle {}: no certificates", ca.display()));
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Client {
            inner:
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(connector),
        })
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Answer, String> {
        let what = format!("{} {}", request.method(), request.uri());
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| format!("{what}: {}", error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{what}: reading the answer: {e}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// An error and its causes, `a: b: c` (hyper's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
