//! What resolving a gateway STS session costs, against resolving a static key.
//!
//! Group `resolve` measures, in the same run:
//!
//! - `static_keys`: the baseline, `StaticKeys::resolve` of a long-term key (a hash-map
//!   look-up and a clone of the identity: an `Arc` and the principal's strings);
//! - `session`: `SessionSource::resolve` of an issued session (base64-decode the token,
//!   open the ChaCha20-Poly1305 seal, decode the claims, derive the secret with
//!   HMAC-SHA256, build the assumed-role ARN and the identity).
//!
//! Group `issue` measures `SessionKeys::issue` (randomness from the system, sealing,
//! secret derivation, base64).
//!
//! Run: `cargo bench -p gateway --bench session`. As a smoke test (each function once):
//! `cargo bench -p gateway --bench session -- --test`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::identity::IdentitySource;
use gateway::identity::sessions::SessionSource;
use gateway::identity::static_keys::StaticKeys;
use gateway::sts::session::{SessionClaims, SessionKey, SessionKeys};
use ring::rand::SystemRandom;

const T0: i64 = 1_700_000_000;
const STATIC: &str = r#"
[[credential]]
access_key_id = "AKIADEMOCHECKOUT0001"
role_arn = "arn:aws:iam::111122223333:role/CheckoutPBCRole"
secret = "demo+checkout+secret+key+not+for+production"
tags = { team = "checkout" }
"#;

/// A typical session: a role with a path, a source identity, two tags.
fn claims() -> SessionClaims {
    SessionClaims {
        role_arn: "arn:aws:iam::111122223333:role/teams/checkout/CheckoutToOrderRole".into(),
        session_name: "checkout-7f9c2b".into(),
        source_identity: Some("checkout-pbc".into()),
        tags: vec![
            ("team".into(), "checkout".into()),
            ("env".into(), "prod".into()),
        ],
        issued_at: T0,
        expires_at: T0 + 3600,
        chained: false,
        origin_issued_at: None,
    }
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    // Two keys, as after a rotation; the session is sealed by the first.
    let keys = Arc::new(
        SessionKeys::new(vec![
            SessionKey::new("k2", &[2; 32]).unwrap(),
            SessionKey::new("k1", &[1; 32]).unwrap(),
        ])
        .unwrap(),
    );
    let sessions = SessionSource::new(Arc::clone(&keys), HashMap::new());
    let creds = keys.issue(&claims(), &rng).unwrap();
    let statics = StaticKeys::parse(STATIC, "bench.toml", Path::new("."), &|_| None).unwrap();
    // Setup: both resolve, so the bench measures success paths.
    sessions
        .resolve(&creds.access_key_id, Some(&creds.session_token), T0)
        .unwrap();
    statics.resolve("AKIADEMOCHECKOUT0001", None, T0).unwrap();
    println!(
        "session token: {} characters; access key id {} characters",
        creds.session_token.len(),
        creds.access_key_id.len()
    );

    let mut g = c.benchmark_group("resolve");
    g.bench_function("static_keys", |b| {
        b.iter(|| {
            statics
                .resolve(black_box("AKIADEMOCHECKOUT0001"), None, black_box(T0))
                .unwrap()
        });
    });
    g.bench_function("session", |b| {
        b.iter(|| {
            sessions
                .resolve(
                    black_box(&creds.access_key_id),
                    Some(black_box(&creds.session_token)),
                    black_box(T0),
                )
                .unwrap()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("issue");
    let claims = claims();
    g.bench_function("issue", |b| {
        b.iter(|| keys.issue(black_box(&claims), &rng).unwrap());
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench
}
criterion_main!(benches);
