//! Admission control at the door: who may open a connection, decided before the upgrade.
//!
//! [`Guard`] owns the process-wide state the workers share for it: open connections per
//! client IP (IPv6 counted per /64), open connections per user (the token's `sub`), and a
//! handshake token bucket per client IP, each in a map split into 64 mutex-guarded shards
//! (touched once per accept or handshake and once per close, never per message). It also
//! runs the policy checks of [`crate::auth`]: the origin allowlist and the token.
//!
//! Every count a connection takes is held by a [`Lease`] stored on the connection and
//! released when it ends. Memory is bounded: connection counts are removed at zero (so the
//! maps never hold more entries than open connections), and handshake buckets that have
//! refilled are evicted when a shard fills (see [`RATE_SHARD_CAP`]).

mod bucket;

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

pub use bucket::{BucketShape, TokenBucket};

use crate::{
    auth::{token_from_request, AuthError, Identity, KeySetupError, OriginAllowlist, Verifier},
    config::{AuthMode, Config},
    proto::handshake::Request,
};

/// Shards of each map.
const SHARDS: usize = 64;
/// Handshake buckets one shard keeps before it evicts refilled ones (64 × 4096 = 262,144
/// client addresses tracked at once). When a shard is still full after eviction, new
/// addresses are admitted untracked: a storm from very many addresses cannot grow memory,
/// and it is shed by the global connection limit instead.
pub const RATE_SHARD_CAP: usize = 4096;

/// A client address as the limits count it: an IPv4 address (or IPv4-mapped IPv6 address)
/// whole, an IPv6 address by its /64 prefix (one subscriber line usually owns a /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(u128);

impl IpKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey(0xffff_0000_0000 | u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::of(IpAddr::V4(v4)),
                None => IpKey(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

/// Why a connection was refused before the upgrade; each maps to an HTTP status and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The process is at `max_connections`: 503.
    Full,
    /// The client address has `max_connections_per_ip` open: 429.
    IpLimit,
    /// The client address is over its handshake rate: 429.
    HandshakeRate,
    /// A browser handshake from an origin not allowed: 403.
    Origin,
    /// No token, or one that does not verify: 401.
    Unauthorized,
    /// The token has expired: 401 "token expired".
    TokenExpired,
    /// The user has `max_connections_per_user` open: 429.
    UserLimit,
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Full => 503,
            Refusal::IpLimit | Refusal::HandshakeRate | Refusal::UserLimit => 429,
            Refusal::Origin => 403,
            Refusal::Unauthorized | Refusal::TokenExpired => 401,
        }
    }

    /// The short reason sent as the body.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "server full",
            Refusal::IpLimit => "too many connections from this address",
            Refusal::HandshakeRate => "too many handshakes from this address",
            Refusal::Origin => "origin not allowed",
            Refusal::Unauthorized => "missing or invalid token",
            Refusal::TokenExpired => "token expired",
            Refusal::UserLimit => "too many connections for this user",
        }
    }
}

/// Counts per key in sharded maps; an entry exists only while its count is above zero.
#[derive(Debug)]
pub struct Counts<K> {
    shards: Box<[Mutex<HashMap<K, u32>>]>,
    hasher: RandomState,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn new() -> Self {
        Counts {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, u32>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        // A panic while holding a shard cannot leave a count half-updated: recover it.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one more for `key` unless it already has `max`.
    fn acquire(&self, key: &K, max: usize) -> bool {
        let mut m = self.shard(key);
        let n = m.entry(key.clone()).or_insert(0);
        if *n as usize >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, key: &K) {
        let mut m = self.shard(key);
        if let Some(n) = m.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(key);
            }
        }
    }

    /// Entries held now (for tests and stats).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether no key has a count.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One count held on a key of a [`Counts`]; released when dropped.
#[derive(Debug)]
pub struct Lease<K: Hash + Eq + Clone> {
    counts: Arc<Counts<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Lease<K> {
    fn drop(&mut self) {
        self.counts.release(&self.key);
    }
}

/// What an admitted connection holds until it ends: its counts and its identity.
#[derive(Debug, Default)]
pub struct Admission {
    /// The per-IP count.
    pub ip: Option<Lease<IpKey>>,
    /// The per-user count.
    pub user: Option<Lease<Box<str>>>,
    /// Who the token says the connection is (`None` when auth is off).
    pub identity: Option<Arc<Identity>>,
}

/// Handshake buckets per client address, sharded, with bounded memory.
#[derive(Debug)]
struct RateTable {
    shape: BucketShape,
    shards: Box<[Mutex<HashMap<IpKey, TokenBucket>>]>,
    hasher: RandomState,
}

impl RateTable {
    fn allow(&self, key: IpKey, now_ms: u64) -> bool {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        let mut m = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = m.get_mut(&key) {
            return b.take(self.shape, now_ms, 1);
        }
        if m.len() >= RATE_SHARD_CAP {
            // A refilled bucket is the same as no bucket: forget those.
            let shape = self.shape;
            m.retain(|_, b| !b.is_full_at(shape, now_ms));
            if m.len() >= RATE_SHARD_CAP {
                return true;
            }
        }
        let mut b = TokenBucket::full(self.shape, now_ms);
        let ok = b.take(self.shape, now_ms, 1);
        m.insert(key, b);
        ok
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// The server's admission control, shared by every worker.
#[derive(Debug)]
pub struct Guard {
    verifier: Option<Verifier>,
    query_token: bool,
    origins: Option<OriginAllowlist>,
    per_ip: Option<(Arc<Counts<IpKey>>, usize)>,
    per_user: Option<(Arc<Counts<Box<str>>>, usize)>,
    rate: Option<RateTable>,
    epoch: Instant,
}

impl Guard {
    /// The guard `cfg` describes; reads the JWT key file when auth is required.
    pub fn from_config(cfg: &Config) -> Result<Guard, KeySetupError> {
        let (a, l) = (&cfg.auth, &cfg.limits);
        let verifier = match a.mode {
            AuthMode::Off => None,
            AuthMode::Required => Some(Verifier::from_config(a)?),
        };
        let origins = if a.check_origin {
            // Validated with the rest of the configuration.
            Some(OriginAllowlist::new(&a.allowed_origins).unwrap_or_default())
        } else {
            None
        };
        let per_user = (verifier.is_some() && l.max_connections_per_user > 0)
            .then(|| (Arc::new(Counts::new()), l.max_connections_per_user));
        Ok(Guard {
            verifier,
            query_token: a.query_token,
            origins,
            per_ip: (l.max_connections_per_ip > 0)
                .then(|| (Arc::new(Counts::new()), l.max_connections_per_ip)),
            per_user,
            rate: (l.handshake_rate_per_ip > 0).then(|| RateTable {
                shape: BucketShape {
                    rate: u64::from(l.handshake_rate_per_ip),
                    burst: u64::from(l.handshake_burst_per_ip.max(1)),
                },
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
            }),
            epoch: Instant::now(),
        })
    }

    /// A guard that admits everyone (auth off, no limits).
    pub fn open() -> Guard {
        Guard {
            verifier: None,
            query_token: false,
            origins: None,
            per_ip: None,
            per_user: None,
            rate: None,
            epoch: Instant::now(),
        }
    }

    /// Whether every handshake must carry a valid token.
    pub fn auth_required(&self) -> bool {
        self.verifier.is_some()
    }

    /// Checks at accept, before a byte is read: the handshake rate, then the per-IP limit.
    pub fn on_accept(&self, peer: IpAddr) -> Result<Option<Lease<IpKey>>, Refusal> {
        if self.rate.is_none() && self.per_ip.is_none() {
            return Ok(None);
        }
        let key = IpKey::of(peer);
        if let Some(rate) = &self.rate {
            let now_ms = self.epoch.elapsed().as_millis() as u64;
            if !rate.allow(key, now_ms) {
                return Err(Refusal::HandshakeRate);
            }
        }
        match &self.per_ip {
            None => Ok(None),
            Some((counts, max)) => {
                if counts.acquire(&key, *max) {
                    Ok(Some(Lease {
                        counts: counts.clone(),
                        key,
                    }))
                } else {
                    Err(Refusal::IpLimit)
                }
            }
        }
    }

    /// Checks on the parsed upgrade request: origin, token, then the per-user limit.
    pub fn on_handshake(&self, req: &Request<'_, '_>) -> Result<Admission, Refusal> {
        if let (Some(allow), Some(origin)) = (&self.origins, req.origin) {
            if !allow.allows(origin) {
                return Err(Refusal::Origin);
            }
        }
        let Some(verifier) = &self.verifier else {
            return Ok(Admission::default());
        };
        let token = token_from_request(req, self.query_token).ok_or(Refusal::Unauthorized)?;
        let identity = verifier.verify(&token).map_err(|e| match e {
            AuthError::Expired => Refusal::TokenExpired,
            _ => Refusal::Unauthorized,
        })?;
        let user = match &self.per_user {
            None => None,
            Some((counts, max)) => {
                let key = identity.user.clone();
                if !counts.acquire(&key, *max) {
                    return Err(Refusal::UserLimit);
                }
                Some(Lease {
                    counts: counts.clone(),
                    key,
                })
            }
        };
        Ok(Admission {
            ip: None,
            user,
            identity: Some(Arc::new(identity)),
        })
    }

    /// Verify a token presented on an open connection (in-band refresh).
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        match &self.verifier {
            Some(v) => v.verify(token),
            None => Err(AuthError::Disabled),
        }
    }

    /// Seconds of clock skew allowed past `exp`.
    pub fn leeway(&self) -> u64 {
        self.verifier.as_ref().map_or(0, Verifier::leeway)
    }

    /// Entries in the per-IP, per-user and handshake-rate maps now.
    pub fn tracked(&self) -> (usize, usize, usize) {
        (
            self.per_ip.as_ref().map_or(0, |(c, _)| c.len()),
            self.per_user.as_ref().map_or(0, |(c, _)| c.len()),
            self.rate.as_ref().map_or(0, RateTable::len),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::of(a.into()), IpKey::of(b.into()));
        assert_ne!(IpKey::of(a.into()), IpKey::of(c.into()));
        let v4 = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(IpKey::of(v4.into()), IpKey::of(v4.to_ipv6_mapped().into()));
        assert_ne!(
            IpKey::of(v4.into()),
            IpKey::of(Ipv4Addr::new(10, 1, 2, 4).into())
        );
    }

    fn guard(per_ip: usize, rate: u32, burst: u32) -> Guard {
        let mut cfg = Config::default();
        cfg.limits.max_connections_per_ip = per_ip;
        cfg.limits.handshake_rate_per_ip = rate;
        cfg.limits.handshake_burst_per_ip = burst;
        Guard::from_config(&cfg).unwrap()
    }

    #[test]
    fn per_ip_counts_release_on_drop_and_leave_no_entry() {
        let g = guard(2, 0, 0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = g.on_accept(ip).unwrap();
        let b = g.on_accept(ip).unwrap();
        assert_eq!(g.on_accept(ip).unwrap_err(), Refusal::IpLimit);
        assert!(g.on_accept("192.0.2.2".parse().unwrap()).is_ok());
        drop(a);
        let c = g.on_accept(ip).unwrap();
        drop((b, c));
        assert_eq!(g.tracked().0, 0, "counts at zero are removed");
    }

    #[test]
    fn handshake_rate_sheds_a_burst_and_keeps_memory_bounded() {
        let g = guard(0, 1, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(g.on_accept(ip).is_ok());
        }
        assert_eq!(g.on_accept(ip).unwrap_err(), Refusal::HandshakeRate);
        // A storm of distinct addresses, each within its burst.
        for i in 0..(RATE_SHARD_CAP * SHARDS + 10_000) as u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert!(g.on_accept(ip).is_ok());
        }
        assert!(g.tracked().2 <= RATE_SHARD_CAP * SHARDS);
    }

    #[test]
    fn rate_table_evicts_refilled_buckets() {
        let t = RateTable {
            shape: BucketShape {
                rate: 1000,
                burst: 1,
            },
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        };
        let n = RATE_SHARD_CAP * SHARDS;
        for i in 0..n as u32 {
            t.allow(IpKey(u128::from(i)), 0);
        }
        // One second later every bucket has refilled: new addresses evict them.
        for i in 0..n as u32 {
            assert!(t.allow(IpKey(u128::from(i) + (1 << 40)), 1000));
        }
        assert!(t.len() <= n);
    }
}
