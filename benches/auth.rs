//! Criterion benchmarks of what authentication and admission cost per handshake: verifying
//! an HS256, ES256 and RS256 token, and the guard's accept check (per-IP count and handshake
//! bucket) for one address and for a storm of distinct addresses.

use std::{net::IpAddr, time::Duration};

use corecast::{auth::Verifier, config::Config, guard::Guard};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "user-1234",
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "corecast": {"sub": ["prices.*", "news.eu"], "pub": ["orders.eu"]}
    })
}

fn verify(c: &mut Criterion) {
    use rsa::{pkcs1::EncodeRsaPrivateKey, pkcs8::EncodePublicKey, pkcs8::LineEnding};
    let mut g = c.benchmark_group("verify");
    g.measurement_time(Duration::from_secs(2));
    let secret = b"a-benchmark-secret-of-32-bytes!!";
    let v = Verifier::new(
        Algorithm::HS256,
        DecodingKey::from_secret(secret),
        Duration::ZERO,
        &[],
        &[],
    );
    let t = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    g.bench_function("hs256", |b| b.iter(|| v.verify(black_box(&t)).unwrap()));

    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let v = Verifier::new(
        Algorithm::ES256,
        DecodingKey::from_ec_pem(ec.public_key_pem().as_bytes()).unwrap(),
        Duration::ZERO,
        &[],
        &[],
    );
    let key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let t = encode(&Header::new(Algorithm::ES256), &claims(), &key).unwrap();
    g.bench_function("es256", |b| b.iter(|| v.verify(black_box(&t)).unwrap()));

    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public = rsa::RsaPublicKey::from(&rsa_key)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let v = Verifier::new(
        Algorithm::RS256,
        DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
        Duration::ZERO,
        &[],
        &[],
    );
    let private = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let t = encode(&Header::new(Algorithm::RS256), &claims(), &key).unwrap();
    g.bench_function("rs256", |b| b.iter(|| v.verify(black_box(&t)).unwrap()));
    g.finish();
}

fn accept(c: &mut Criterion) {
    let mut g = c.benchmark_group("guard_accept");
    g.measurement_time(Duration::from_secs(2));
    let mut cfg = Config::default();
    cfg.limits.max_connections_per_ip = 1_000_000_000;
    cfg.limits.handshake_rate_per_ip = 1_000_000_000;
    cfg.limits.handshake_burst_per_ip = 1_000_000_000;
    let guard = Guard::from_config(&cfg).unwrap();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    // Take a count and give it back, as an accepted connection that closes does.
    g.bench_function("one_address", |b| {
        b.iter(|| drop(guard.on_accept(black_box(ip)).unwrap()))
    });
    let mut n: u32 = 0;
    g.bench_function("distinct_addresses", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            drop(guard.on_accept(IpAddr::V4(n.into())))
        })
    });
    g.finish();
}

criterion_group!(benches, verify, accept);
criterion_main!(benches);
