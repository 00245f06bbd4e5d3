//! `gateway certs`: a one-shot private PKI for docker-compose and small setups: a CA,
//! a server certificate per name, and optionally the gateway's assertion signing key
//! and an STS sealing key. It is idempotent: files that exist are kept, so an init
//! container can run it on every `docker compose up` without rotating anything.
//!
//! Production meshes get certificates from their own PKI (cert-manager, Vault, SPIFFE);
//! this is the "nothing to set up" path.

use crate::demo::{DemoCa, random_hex};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The CA's common name unless `--ca-name` says otherwise.
pub const DEFAULT_CA_NAME: &str = "sigv4-gateway mesh CA";

/// Certificate names whose files are `gateway certs`' own (`ca.pem`, `ca-key.pem`,
/// `assertion-key.pem`).
const RESERVED_NAMES: [&str; 4] = ["ca", "ca-key", "assertion", "assertion-key"];

/// One certificate to issue: `NAME` or `NAME=SAN,SAN,...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSpec {
    /// The file stem (`NAME.pem`, `NAME-key.pem`) and common name.
    pub name: String,
    /// DNS names or IP addresses; `[NAME]` when none are given.
    pub sans: Vec<String>,
}

impl FromStr for CertSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, sans) = match s.split_once('=') {
            Some((name, sans)) => (name, Some(sans)),
            None => (s, None),
        };
        let file_safe = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if name.is_empty() || name.starts_with('.') || !name.chars().all(file_safe) {
            return Err(format!(
                "`{name}` is not a usable certificate name: use letters, digits, `.`, `_` and `-` \
                 (it names the files NAME.pem and NAME-key.pem)"
            ));
        }
        // NAME.pem and NAME-key.pem must not be the CA's files, the assertion key, or
        // another certificate's key: `ca` would be "kept" as the CA itself, `assertion`
        // would make a TLS key double as the assertion signing key.
        if RESERVED_NAMES.contains(&name) || name.ends_with("-key") {
            return Err(format!(
                "`{name}` cannot name a certificate: its files would be taken for the CA's \
                 (ca.pem, ca-key.pem), the assertion key (assertion-key.pem) or another \
                 certificate's key (NAME-key.pem); choose another name"
            ));
        }
        let sans: Vec<String> = match sans {
            None => vec![name.to_string()],
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        };
        if sans.is_empty() {
            return Err(format!("`{s}`: no subject alternative name after `=`"));
        }
        for san in &sans {
            let ok = san.parse::<std::net::IpAddr>().is_ok()
                || ServerName::try_from(san.as_str()).is_ok();
            if !ok {
                return Err(format!("`{san}` is neither a DNS name nor an IP address"));
            }
        }
        Ok(Self {
            name: name.to_string(),
            sans,
        })
    }
}

/// What `gateway certs` was asked to make.
#[derive(Clone, Debug)]
pub struct Request {
    /// The directory the files go to (created if missing).
    pub out: PathBuf,
    /// The CA's common name.
    pub ca_name: String,
    /// The server certificates.
    pub certs: Vec<CertSpec>,
    /// Also write `assertion-key.pem` (PKCS#8 P-256: `[assertion] key_file`).
    pub assertion_key: bool,
    /// Also write `sts-key` (32 random bytes, hex: an `[sts] keys` `secret_file`).
    pub sts_key: bool,
}

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written now.
    Created(PathBuf),
    /// There already, left as it was.
    Kept(PathBuf),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Created(p) => write!(f, "created {}", p.display()),
            Self::Kept(p) => write!(f, "kept    {} (exists)", p.display()),
        }
    }
}

/// Makes what `request` names that does not exist yet, and says what it did.
pub fn run(request: &Request) -> Result<Vec<Outcome>, String> {
    let out = &request.out;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut done = Vec::new();

    let ca_cert = out.join("ca.pem");
    let ca_key = out.join("ca-key.pem");
    let ca = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => {
            let cert_pem = read(&ca_cert)?;
            let key_pem = zeroize::Zeroizing::new(read(&ca_key)?);
            done.push(Outcome::Kept(ca_cert.clone()));
            done.push(Outcome::Kept(ca_key.clone()));
            DemoCa::from_pem(&cert_pem, &key_pem, &request.ca_name)
                .map_err(|e| format!("{}: {e}", ca_key.display()))?
        }
        (false, false) => {
            let (ca, key_pem) = DemoCa::generate_named(&request.ca_name)?;
            write_new(&ca_key, &key_pem, true)?;
            write_new(&ca_cert, &ca.cert_pem, false)?;
            done.push(Outcome::Created(ca_cert.clone()));
            done.push(Outcome::Created(ca_key.clone()));
            ca
        }
        (cert, _) => {
            let (have, missing) = if cert {
                (&ca_cert, &ca_key)
            } else {
                (&ca_key, &ca_cert)
            };
            return Err(format!(
                "{} exists but {} does not: restore it, or remove {} to start a new CA \
                 (every certificate must then be issued again)",
                have.display(),
                missing.display(),
                have.display()
            ));
        }
    };
    let verifier = chain_verifier(&ca.cert_pem)?;

    for spec in &request.certs {
        let cert_path = out.join(format!("{}.pem", spec.name));
        let key_path = out.join(format!("{}-key.pem", spec.name));
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                done.push(Outcome::Kept(cert_path));
                done.push(Outcome::Kept(key_path));
                continue;
            }
            (false, false) => {}
            _ => {
                return Err(format!(
                    "only one of {} and {} exists: remove it to issue `{}` again",
                    cert_path.display(),
                    key_path.display(),
                    spec.name
                ));
            }
        }
        let issued = ca.issue(&spec.name, &spec.sans)?;
        check_chain(&verifier, &issued.cert_pem, &spec.sans).map_err(|e| {
            format!(
                "the certificate issued for `{}` does not chain to {}: {e}. Was the CA made \
                 with another --ca-name? Give that name, or remove {} to start over",
                spec.name,
                ca_cert.display(),
                out.display()
            )
        })?;
        write_new(&key_path, &issued.key_pem, true)?;
        // Leaf first, then the CA: what a TLS server sends.
        write_new(
            &cert_path,
            &format!("{}{}", issued.cert_pem, ca.cert_pem),
            false,
        )?;
        done.push(Outcome::Created(cert_path));
        done.push(Outcome::Created(key_path));
    }

    if request.assertion_key {
        let path = out.join("assertion-key.pem");
        if path.exists() {
            done.push(Outcome::Kept(path));
        } else {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| format!("cannot make the assertion key: {e}"))?;
            write_new(&path, &zeroize::Zeroizing::new(key.serialize_pem()), true)?;
            done.push(Outcome::Created(path));
        }
    }
    if request.sts_key {
        let path = out.join("sts-key");
        if path.exists() {
            done.push(Outcome::Kept(path));
        } else {
            let key = zeroize::Zeroizing::new(random_hex(32)?);
            write_new(&path, &key, true)?;
            done.push(Outcome::Created(path));
        }
    }
    Ok(done)
}

/// Writes a file that must not exist yet: never through a symbolic link (`O_EXCL`
/// refuses one, dangling or not, so a link planted in a shared directory cannot send a
/// private key elsewhere or overwrite another file), never over a file that appeared
/// since it was looked for. `private` files are readable by their owner only; the
/// mode is set whatever the umask. A file cut short by a failed write is removed, so
/// the next run does not keep it.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    let mode = if private { 0o600 } else { 0o644 };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "will not write {}: something is already there (a symbolic link, which is \
                 never written through, or a file made meanwhile); remove it and run again",
                path.display()
            )
        } else {
            format!("cannot write {}: {e}", path.display())
        }
    })?;
    let written = (|| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(path);
        format!("cannot write {}: {e}", path.display())
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn chain_verifier(ca_pem: &str) -> Result<Arc<rustls::client::WebPkiServerVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("ca.pem: {}", crate::pki::pem_reason(&e)))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca.pem is not usable as a CA: {e}"))?;
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| format!("ca.pem: {e}"))
}

/// Checks that `cert_pem` chains to the CA and is valid for each of `sans` now.
fn check_chain(
    verifier: &rustls::client::WebPkiServerVerifier,
    cert_pem: &str,
    sans: &[String],
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier as _;
    let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| crate::pki::pem_reason(&e))?;
    for san in sans {
        let name = ServerName::try_from(san.clone()).map_err(|e| format!("`{san}`: {e}"))?;
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gateway-certs-{tag}-{}-{}",
            std::process::id(),
            crate::random::uuid_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn request(out: &Path, names: &[&str]) -> Request {
        Request {
            out: out.to_path_buf(),
            ca_name: DEFAULT_CA_NAME.into(),
            certs: names.iter().map(|n| n.parse().unwrap()).collect(),
            assertion_key: true,
            sts_key: true,
        }
    }

    #[test]
    fn specs_parse_and_bad_names_are_refused() {
        assert_eq!(
            "order".parse::<CertSpec>().unwrap(),
            CertSpec {
                name: "order".into(),
                sans: vec!["order".into()]
            }
        );
        assert_eq!(
            "gateway=gateway,localhost,127.0.0.1"
                .parse::<CertSpec>()
                .unwrap()
                .sans,
            vec!["gateway", "localhost", "127.0.0.1"]
        );
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "x=",
            "x=not a name",
            "ca",
            "ca-key",
            "assertion",
            "assertion-key=gateway",
            "order-key",
        ] {
            assert!(bad.parse::<CertSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn issues_once_then_keeps_and_extends_with_the_same_ca() {
        let dir = temp_dir("idem");
        let first = run(&request(
            &dir,
            &["gateway=gateway,localhost,127.0.0.1", "order"],
        ))
        .unwrap();
        assert!(
            first.iter().all(|o| matches!(o, Outcome::Created(_))),
            "{first:?}"
        );
        let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        let order = std::fs::read_to_string(dir.join("order.pem")).unwrap();

        let second = run(&request(
            &dir,
            &["gateway=gateway,localhost,127.0.0.1", "order", "payment"],
        ))
        .unwrap();
        let created: Vec<_> = second
            .iter()
            .filter_map(|o| match o {
                Outcome::Created(p) => Some(p.file_name().unwrap().to_string_lossy().into_owned()),
                Outcome::Kept(_) => None,
            })
            .collect();
        assert_eq!(created, ["payment.pem", "payment-key.pem"]);
        assert_eq!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca);
        assert_eq!(
            std::fs::read_to_string(dir.join("order.pem")).unwrap(),
            order
        );

        // The new certificate chains to the old CA, and the server config loads.
        let verifier = chain_verifier(&ca).unwrap();
        let payment = std::fs::read_to_string(dir.join("payment.pem")).unwrap();
        check_chain(&verifier, &payment, &["payment".into()]).unwrap();
        check_chain(&verifier, &payment, &["order".into()]).unwrap_err();
        let key = std::fs::read_to_string(dir.join("payment-key.pem")).unwrap();
        crate::demo::upstream::tls_config(&payment, &key).unwrap();

        // The keys are what the gateway's config takes.
        crate::assertion::AssertionSigner::from_pem_file(&dir.join("assertion-key.pem"), "iss", 60)
            .unwrap();
        let sts = crate::config::StsKeyConfig {
            id: "k1".into(),
            secret_file: Some(dir.join("sts-key")),
            secret_env: None,
        };
        crate::sts::load_keys(&[sts]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for private in [
                "ca-key.pem",
                "order-key.pem",
                "assertion-key.pem",
                "sts-key",
            ] {
                let mode = std::fs::metadata(dir.join(private))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "{private} is readable by others: {mode:o}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_ca_name_is_caught_before_anything_is_written() {
        let dir = temp_dir("name");
        run(&request(&dir, &["order"])).unwrap();
        let mut other = request(&dir, &["payment"]);
        other.ca_name = "another CA".into();
        let err = run(&other).unwrap_err();
        assert!(
            err.contains("does not chain") && err.contains("--ca-name"),
            "{err}"
        );
        assert!(!dir.join("payment.pem").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_never_written_through_a_symbolic_link() {
        let dir = temp_dir("symlink");
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        // A dangling link where the CA key goes, and one to an existing file.
        std::os::unix::fs::symlink(elsewhere.join("stolen-key.pem"), out.join("ca-key.pem"))
            .unwrap();
        let victim = elsewhere.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, out.join("order-key.pem")).unwrap();

        let err = run(&request(&out, &["order"])).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!elsewhere.join("stolen-key.pem").exists());
        std::fs::remove_file(out.join("ca-key.pem")).unwrap();
        let err = run(&request(&out, &["order"])).unwrap_err();
        assert!(err.contains("only one of"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn half_a_pair_is_an_error_not_a_silent_reissue() {
        let dir = temp_dir("half");
        run(&request(&dir, &["order"])).unwrap();
        std::fs::remove_file(dir.join("order-key.pem")).unwrap();
        let err = run(&request(&dir, &["order"])).unwrap_err();
        assert!(err.contains("only one of"), "{err}");
        std::fs::remove_file(dir.join("ca-key.pem")).unwrap();
        let err = run(&request(&dir, &["order"])).unwrap_err();
        assert!(err.contains("start a new CA"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
