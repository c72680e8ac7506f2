//! Who may connect, subscribe and publish: JWT verification ([`Verifier`]), the identity a
//! token grants ([`Identity`], [`TopicPatterns`]), where a token rides in the upgrade request
//! ([`token_from_request`]), and the browser origin allowlist ([`OriginAllowlist`]).
//!
//! Pure policy: no I/O after start-up (keys are read from files once, by
//! [`Verifier::from_config`]), no server state. The server's admission control
//! (`crate::guard`) calls into it during the handshake, and the pub/sub engine calls it for
//! `sub`, `pub` and in-band token refresh. See `docs/security.md`.
#![forbid(unsafe_code)]

mod identity;
mod jwt;
mod token;

pub use crate::names::origin::{OriginAllowlist, OriginPatternError};
pub use identity::{Identity, TopicPatterns};
pub use jwt::{AuthError, KeySetupError, Verifier};
pub use token::{token_from_request, TOKEN_PROTOCOL_PREFIX};
