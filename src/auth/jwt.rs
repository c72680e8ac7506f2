//! JWT verification with the `jsonwebtoken` crate (ring backend): HS256 with a shared secret,
//! RS256 or ES256 with a public key, from files named in the configuration.

use std::{path::PathBuf, time::Duration};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Identity, TopicPatterns};
use crate::config::{AuthConfig, JwtAlgorithm};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no token.
    #[error("missing token")]
    Missing,
    /// The token's `exp` has passed (leeway included).
    #[error("token expired")]
    Expired,
    /// The signature, algorithm, format, `aud`, `iss` or `nbf` check failed.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// A refreshed token names another user than the connection's.
    #[error("token is for another user")]
    OtherUser,
    /// Authentication is off on this server.
    #[error("authentication is off")]
    Disabled,
}

impl AuthError {
    /// A stable label for logs and `err` messages.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Expired => "token_expired",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::OtherUser => "other_user",
            AuthError::Disabled => "auth_off",
        }
    }
}

/// Why the verification key could not be set up at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetupError {
    /// The algorithm needs a key file and none was configured.
    #[error("auth is required but `{0}` is not set")]
    MissingKey(&'static str),
    /// The key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file's contents are not a key of the configured kind.
    #[error("{path} is not a valid {kind} key: {message}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What was expected (`HS256 secret`, `RSA public`, `EC P-256 public`).
        kind: &'static str,
        /// The parser's message.
        message: String,
    },
}

/// The claims corecast reads; every other claim is ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: Option<u64>,
    #[serde(default)]
    corecast: Option<TopicClaims>,
    /// Flat alternative to `corecast.sub`.
    #[serde(default)]
    sub_topics: Option<Vec<String>>,
    /// Flat alternative to `corecast.pub`.
    #[serde(default)]
    pub_topics: Option<Vec<String>>,
}

/// `"corecast": {"sub": [...], "pub": [...]}`.
#[derive(Debug, Deserialize)]
struct TopicClaims {
    #[serde(default)]
    sub: Vec<String>,
    #[serde(default, rename = "pub")]
    publish: Vec<String>,
}

/// Verifies tokens against one key and the configured checks; shared by every worker.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

fn read(
    path: &Option<PathBuf>,
    setting: &'static str,
) -> Result<(PathBuf, Vec<u8>), KeySetupError> {
    let path = path.clone().ok_or(KeySetupError::MissingKey(setting))?;
    let bytes = std::fs::read(&path).map_err(|source| KeySetupError::Read {
        path: path.clone(),
        source,
    })?;
    Ok((path, bytes))
}

impl Verifier {
    /// The verifier the configuration describes: reads the secret or public key file.
    pub fn from_config(cfg: &AuthConfig) -> Result<Verifier, KeySetupError> {
        let (alg, key) = match cfg.jwt_algorithm {
            JwtAlgorithm::Hs256 => {
                let (path, bytes) = read(&cfg.jwt_secret_file, "jwt_secret_file")?;
                // A trailing newline from `echo secret > file` is not part of the secret.
                let secret = bytes.trim_ascii_end();
                if secret.len() < 16 {
                    return Err(KeySetupError::BadKey {
                        path,
                        kind: "HS256 secret",
                        message: "shorter than 16 bytes".into(),
                    });
                }
                (Algorithm::HS256, DecodingKey::from_secret(secret))
            }
            JwtAlgorithm::Rs256 => {
                let (path, bytes) = read(&cfg.jwt_public_key_file, "jwt_public_key_file")?;
                let key = DecodingKey::from_rsa_pem(&bytes).map_err(|e| KeySetupError::BadKey {
                    path,
                    kind: "RSA public",
                    message: e.to_string(),
                })?;
                (Algorithm::RS256, key)
            }
            JwtAlgorithm::Es256 => {
                let (path, bytes) = read(&cfg.jwt_public_key_file, "jwt_public_key_file")?;
                let key = DecodingKey::from_ec_pem(&bytes).map_err(|e| KeySetupError::BadKey {
                    path,
                    kind: "EC P-256 public",
                    message: e.to_string(),
                })?;
                (Algorithm::ES256, key)
            }
        };
        Ok(Verifier::new(
            alg,
            key,
            cfg.jwt_leeway,
            &cfg.jwt_audience,
            &cfg.jwt_issuer,
        ))
    }

    /// A verifier for `alg` with `key`; `aud` and `iss` are checked only when not empty.
    pub fn new(
        alg: Algorithm,
        key: DecodingKey,
        leeway: Duration,
        audience: &[String],
        issuer: &[String],
    ) -> Verifier {
        let mut v = Validation::new(alg);
        v.leeway = leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        if audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(audience);
        }
        if !issuer.is_empty() {
            v.set_issuer(issuer);
        }
        Verifier {
            key,
            validation: v,
            leeway: leeway.as_secs(),
        }
    }

    /// The clock-skew allowance, in seconds: a token is accepted until `exp + leeway`, and a
    /// connection is closed at that moment unless refreshed.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Check `token`'s signature and claims, and return the identity it grants. A token
    /// without topic claims may neither subscribe nor publish.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not allowed"),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience"),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer"),
                ErrorKind::ImmatureSignature => AuthError::Invalid("not valid yet"),
                ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("missing exp or sub"),
                _ => AuthError::Invalid("malformed"),
            },
        )?;
        let c = data.claims;
        if c.sub.is_empty() || c.sub.len() > 256 {
            return Err(AuthError::Invalid("sub must be 1 to 256 bytes"));
        }
        let (sub, publish) = match c.corecast {
            Some(t) => (t.sub, t.publish),
            None => (
                c.sub_topics.unwrap_or_default(),
                c.pub_topics.unwrap_or_default(),
            ),
        };
        Ok(Identity {
            user: c.sub.into_boxed_str(),
            exp: c.exp,
            subscribe: TopicPatterns::new(sub),
            publish: TopicPatterns::new(publish),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"an-hs256-secret-of-some-length";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn verifier(aud: &[&str], iss: &[&str]) -> Verifier {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Verifier::new(
            Algorithm::HS256,
            DecodingKey::from_secret(SECRET),
            Duration::ZERO,
            &s(aud),
            &s(iss),
        )
    }

    #[test]
    fn nested_and_flat_topic_claims() {
        let v = verifier(&[], &[]);
        let exp = now() + 60;
        let id = v
            .verify(&hs(serde_json::json!({"sub":"alice","exp":exp,
                "corecast":{"sub":["prices.*"],"pub":["orders.eu"]}})))
            .unwrap();
        assert_eq!(&*id.user, "alice");
        assert_eq!(id.exp, Some(exp));
        assert!(id.subscribe.allows("prices.BTC") && !id.subscribe.allows("orders.eu"));
        assert!(id.publish.allows("orders.eu") && !id.publish.allows("prices.BTC"));
        let id = v
            .verify(&hs(serde_json::json!({"sub":"bob","exp":exp,
                "sub_topics":["a"],"pub_topics":["b.*"]})))
            .unwrap();
        assert!(id.subscribe.allows("a") && id.publish.allows("b.c"));
        let id = v
            .verify(&hs(serde_json::json!({"sub":"carol","exp":exp})))
            .unwrap();
        assert!(
            id.subscribe.is_empty() && id.publish.is_empty(),
            "deny by default"
        );
    }

    #[test]
    fn refusals_are_typed() {
        let v = verifier(&["corecast"], &["issuer"]);
        let good = serde_json::json!({"sub":"a","exp":now()+60,"aud":"corecast","iss":"issuer"});
        assert!(v.verify(&hs(good.clone())).is_ok());
        let mut expired = good.clone();
        expired["exp"] = (now() - 10).into();
        assert_eq!(v.verify(&hs(expired)), Err(AuthError::Expired));
        let mut aud = good.clone();
        aud["aud"] = "other".into();
        assert_eq!(
            v.verify(&hs(aud)),
            Err(AuthError::Invalid("wrong audience"))
        );
        let mut iss = good.clone();
        iss["iss"] = "other".into();
        assert_eq!(v.verify(&hs(iss)), Err(AuthError::Invalid("wrong issuer")));
        let no_exp = serde_json::json!({"sub":"a","aud":"corecast","iss":"issuer"});
        assert_eq!(
            v.verify(&hs(no_exp)),
            Err(AuthError::Invalid("missing exp or sub"))
        );
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &good,
            &EncodingKey::from_secret(b"another-secret-entirely"),
        )
        .unwrap();
        assert_eq!(v.verify(&forged), Err(AuthError::Invalid("bad signature")));
        assert_eq!(v.verify("not.a.jwt"), Err(AuthError::Invalid("malformed")));
        assert_eq!(v.verify(""), Err(AuthError::Invalid("malformed")));
        let mut none = hs(good);
        // An `alg: none` header must not pass.
        let body = none.split('.').nth(1).unwrap().to_string();
        none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert!(v.verify(&none).is_err());
    }
}
