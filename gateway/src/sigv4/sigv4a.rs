//! SigV4a: the P-256 key every party derives from the same secret, and ECDSA
//! verification of the string to sign.

use hmac::{KeyInit, Mac};
use p256::ecdsa::VerifyingKey;
use p256::ecdsa::signature::Verifier;
use zeroize::Zeroizing;

use super::Secret;
use super::keys::HmacSha256;

/// The P-256 group order minus two, big-endian: a derived candidate above it is retried.
const N_MINUS_2: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x4f,
];

/// Derives the SigV4a private key as AWS's signers do (NIST SP 800-108 KDF in counter mode
/// with HMAC-SHA256, key `"AWS4A" + secret`, retried while the candidate exceeds n-2, plus
/// one) and returns its public half.
pub(crate) fn derive_verifying_key(access_key_id: &str, secret: &Secret) -> Option<VerifyingKey> {
    let mut kdf_key = Zeroizing::new(Vec::with_capacity(secret.expose().len() + 5));
    kdf_key.extend_from_slice(b"AWS4A");
    kdf_key.extend_from_slice(secret.expose());
    for counter in 1u8..=254 {
        let mut mac = HmacSha256::new_from_slice(&kdf_key).ok()?;
        mac.update(&1u32.to_be_bytes());
        mac.update(b"AWS4-ECDSA-P256-SHA256");
        mac.update(&[0]);
        mac.update(access_key_id.as_bytes());
        mac.update(&[counter]);
        mac.update(&256u32.to_be_bytes());
        let mut candidate: Zeroizing<[u8; 32]> = Zeroizing::new(mac.finalize().into_bytes().into());
        if *candidate > N_MINUS_2 {
            continue;
        }
        // candidate <= n-2, so candidate + 1 neither overflows nor reaches n.
        for byte in candidate.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        let private = p256::SecretKey::from_slice(&*candidate).ok()?;
        return Some(VerifyingKey::from(private.public_key()));
    }
    None
}

/// Verifies a DER-encoded ECDSA P-256/SHA-256 signature over `message`.
pub(crate) fn verify(key: &VerifyingKey, message: &[u8], der_signature: &[u8]) -> bool {
    match p256::ecdsa::Signature::from_der(der_signature) {
        Ok(sig) => key.verify(message, &sig).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::sigv4::encode::hex;

    /// Every v4a case of the AWS suite ships the public key of the key derived from its
    /// credentials; ours must be the same point.
    #[test]
    fn derived_key_matches_the_suite() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/sigv4-test-suite/v4a");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("the AWS suite beside the repository") {
            let case = entry.unwrap().path();
            let key: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(case.join("public-key.json")).unwrap(),
            )
            .unwrap();
            let ctx: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(case.join("context.json")).unwrap())
                    .unwrap();
            let creds = &ctx["credentials"];
            let secret = Secret::from(creds["secret_access_key"].as_str().unwrap());
            let vk =
                derive_verifying_key(creds["access_key_id"].as_str().unwrap(), &secret).unwrap();
            let point = vk.to_sec1_point(false);
            let bytes = point.as_bytes();
            assert_eq!(bytes[0], 4);
            assert_eq!(
                hex(&bytes[1..33]),
                key["X"].as_str().unwrap().to_lowercase()
            );
            assert_eq!(
                hex(&bytes[33..65]),
                key["Y"].as_str().unwrap().to_lowercase()
            );
            checked += 1;
        }
        assert_eq!(checked, 38);
    }

    #[test]
    fn rejects_malformed_der() {
        let vk = derive_verifying_key("AKID", &Secret::from("s")).unwrap();
        assert!(!verify(&vk, b"msg", b""));
        assert!(!verify(&vk, b"msg", &[0x30, 0x02, 0x02, 0x00]));
    }
}
