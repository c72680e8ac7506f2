//! permessage-deflate (RFC 7692), all of it: negotiation here (parse the client's
//! `Sec-WebSocket-Extensions` offers, pick the first acceptable one, write the server's
//! answer), the per-message codec in [`codec`], and the compressors a worker shares between
//! its connections in [`shared`]. A connection's own part (its parameters and, when the
//! client keeps its context, its inflater) is in [`crate::connection`].
//!
//! The server always answers with `server_no_context_takeover`: every message it sends is
//! compressed with a fresh context, so one compressor per worker (reset per message) serves
//! all its connections and a published frame is compressed once for every subscriber that
//! negotiated the same window. The client's side is what the client offered, narrowed by
//! the [`DeflatePolicy`]. No I/O, no allocation while parsing, no panic on any input.

use std::fmt;

pub mod codec;
pub mod shared;

pub use codec::{DeflateError, Deflater, InflateError, Inflater};
pub use shared::{DeflateSettings, SharedDeflate};

/// The extension's registered name.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The widest LZ77 window (32 KiB) and the narrowest the RFC allows (256 bytes).
pub const MAX_WINDOW_BITS: u8 = 15;
/// The narrowest window an offer may name.
pub const MIN_WINDOW_BITS: u8 = 8;
/// The narrowest window zlib's raw deflate can compress with: 8 is silently turned into 9
/// (or refused) by zlib and its ports, so an offer that limits the server to 8 is declined.
pub const MIN_SERVER_WINDOW_BITS: u8 = 9;

/// What the server accepts, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflatePolicy {
    /// Answer every accepted offer with `client_no_context_takeover`, even when the client did
    /// not offer it (RFC 7692 7.1.1.2 allows it): no connection then needs an inflater of its
    /// own, at the price of a worse ratio on client messages.
    pub client_no_context_takeover: bool,
    /// The widest window (9..=15) the server lets a client compress with, when the client
    /// offered `client_max_window_bits` and so lets the server choose. Smaller means less
    /// inflater memory per connection that keeps its context.
    pub client_max_window_bits: u8,
}

impl Default for DeflatePolicy {
    fn default() -> Self {
        DeflatePolicy {
            client_no_context_takeover: false,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// The parameters agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// The window (bits) the server compresses with: 9..=15.
    pub server_max_window_bits: u8,
    /// The widest window (bits) the client compresses with: 8..=15.
    pub client_max_window_bits: u8,
    /// The offer named `server_max_window_bits`, so the answer must name it too.
    answer_server_bits: bool,
    /// The offer named `client_max_window_bits` and the answer narrows it.
    answer_client_bits: bool,
}

impl DeflateParams {
    /// The window bits to inflate the client's messages with (flate2 accepts 9..=15; a wider
    /// window than the sender's always works).
    pub fn inflate_window_bits(&self) -> u8 {
        self.client_max_window_bits.max(MIN_SERVER_WINDOW_BITS)
    }
}

/// The `Sec-WebSocket-Extensions` value of the answer.
impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{EXTENSION_NAME}; server_no_context_takeover")?;
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if self.answer_server_bits {
            write!(
                f,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            )?;
        }
        if self.answer_client_bits {
            write!(
                f,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            )?;
        }
        Ok(())
    }
}

/// Why a permessage-deflate offer was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The item is not `name *(; param[=value])` (bad token, unterminated quote, ...).
    #[error("malformed extension offer")]
    Syntax,
    /// A parameter this extension does not define.
    #[error("unknown parameter")]
    UnknownParam,
    /// A parameter named twice.
    #[error("duplicate parameter")]
    Duplicate,
    /// A value that is not a window size 8..=15 (decimal, no leading zero), or a value on a
    /// parameter that takes none.
    #[error("invalid parameter value")]
    InvalidValue,
    /// `server_max_window_bits` without a value.
    #[error("missing parameter value")]
    MissingValue,
    /// The offer is valid but limits the server to a window zlib cannot compress with (8).
    #[error("server window of 8 bits not supported")]
    Unsupported,
}

/// One parsed permessage-deflate offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// `server_no_context_takeover` was offered.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` was offered.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` (`Some(None)`: offered without a value).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Parse one `Sec-WebSocket-Extensions` item. `None`: another extension;
/// `Some(Err)`: a permessage-deflate offer that must be declined.
pub fn parse_offer(item: &str) -> Option<Result<Offer, OfferError>> {
    let mut parts = Params::new(item);
    let name = match parts.next() {
        Some(Ok((name, None))) => name,
        _ => return None,
    };
    if !name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return None;
    }
    let mut offer = Offer::default();
    for part in parts {
        let (name, value) = match part {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let res = if name.eq_ignore_ascii_case("server_no_context_takeover") {
            flag(&mut offer.server_no_context_takeover, value)
        } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
            flag(&mut offer.client_no_context_takeover, value)
        } else if name.eq_ignore_ascii_case("server_max_window_bits") {
            match (offer.server_max_window_bits, value) {
                (Some(_), _) => Err(OfferError::Duplicate),
                (None, None) => Err(OfferError::MissingValue),
                (None, Some(v)) => window_bits(v).map(|b| offer.server_max_window_bits = Some(b)),
            }
        } else if name.eq_ignore_ascii_case("client_max_window_bits") {
            match (offer.client_max_window_bits, value) {
                (Some(_), _) => Err(OfferError::Duplicate),
                (None, None) => {
                    offer.client_max_window_bits = Some(None);
                    Ok(())
                }
                (None, Some(v)) => {
                    window_bits(v).map(|b| offer.client_max_window_bits = Some(Some(b)))
                }
            }
        } else {
            Err(OfferError::UnknownParam)
        };
        if let Err(e) = res {
            return Some(Err(e));
        }
    }
    Some(Ok(offer))
}

/// A parameter without a value, seen at most once.
fn flag(seen: &mut bool, value: Option<Value<'_>>) -> Result<(), OfferError> {
    if *seen {
        return Err(OfferError::Duplicate);
    }
    if value.is_some() {
        return Err(OfferError::InvalidValue);
    }
    *seen = true;
    Ok(())
}

/// A window size: 8..=15 in decimal without leading zeros, after unquoting.
fn window_bits(v: Value<'_>) -> Result<u8, OfferError> {
    let mut n: u8 = 0;
    for (digits, c) in v.chars().enumerate() {
        let d = match c {
            Some(c @ b'0'..=b'9') => c - b'0',
            _ => return Err(OfferError::InvalidValue),
        };
        if (digits == 1 && n == 0) || digits == 2 {
            return Err(OfferError::InvalidValue); // leading zero, or too long
        }
        n = n * 10 + d;
    }
    if (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&n) {
        Ok(n)
    } else {
        Err(OfferError::InvalidValue)
    }
}

/// Accept `offer` under `policy`, or say why not.
pub fn accept(offer: &Offer, policy: &DeflatePolicy) -> Result<DeflateParams, OfferError> {
    let server_bits = match offer.server_max_window_bits {
        Some(b) if b < MIN_SERVER_WINDOW_BITS => return Err(OfferError::Unsupported),
        Some(b) => b,
        None => MAX_WINDOW_BITS,
    };
    let cap = policy
        .client_max_window_bits
        .clamp(MIN_SERVER_WINDOW_BITS, MAX_WINDOW_BITS);
    // Without `client_max_window_bits` in the offer the answer must not name it (7.1.2.2),
    // and the client may use a 15-bit window.
    let (client_bits, answer_client_bits) = match offer.client_max_window_bits {
        None => (MAX_WINDOW_BITS, false),
        Some(None) => (cap, cap < MAX_WINDOW_BITS),
        Some(Some(b)) => (b.min(cap), b > cap),
    };
    Ok(DeflateParams {
        client_no_context_takeover: offer.client_no_context_takeover
            || policy.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        answer_server_bits: offer.server_max_window_bits.is_some(),
        answer_client_bits,
    })
}

/// Pick the first acceptable permessage-deflate offer among the extension items, in order.
pub fn negotiate<'a>(
    items: impl IntoIterator<Item = &'a str>,
    policy: &DeflatePolicy,
) -> Option<DeflateParams> {
    items
        .into_iter()
        .filter_map(parse_offer)
        .find_map(|offer| offer.and_then(|o| accept(&o, policy)).ok())
}

/// A parameter value as written: a token, or the inside of a quoted string (still escaped).
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Token(&'a str),
    Quoted(&'a str),
}

impl<'a> Value<'a> {
    /// The value's bytes after unescaping, `None` for an escape at the very end.
    fn chars(self) -> impl Iterator<Item = Option<u8>> + 'a {
        let (s, quoted) = match self {
            Value::Token(s) => (s, false),
            Value::Quoted(s) => (s, true),
        };
        let mut bytes = s.bytes();
        std::iter::from_fn(move || {
            let b = bytes.next()?;
            if quoted && b == b'\\' {
                Some(bytes.next())
            } else {
                Some(Some(b))
            }
        })
    }
}

/// Iterates `name` then each `; param[=value]` of one extension item.
struct Params<'a> {
    rest: &'a str,
    done: bool,
}

impl<'a> Params<'a> {
    fn new(item: &'a str) -> Self {
        Params {
            rest: item,
            done: false,
        }
    }

    /// Parse `token [= (token | quoted-string)]` up to the next `;` or the end.
    fn part(&mut self) -> Result<(&'a str, Option<Value<'a>>), OfferError> {
        let s = trim_start(self.rest);
        let name_end = s.find(|c: char| !is_tchar(c)).unwrap_or(s.len());
        let name = &s[..name_end];
        if name.is_empty() {
            return Err(OfferError::Syntax);
        }
        let mut s = trim_start(&s[name_end..]);
        let mut value = None;
        if let Some(v) = s.strip_prefix('=') {
            let v = trim_start(v);
            if let Some(q) = v.strip_prefix('"') {
                let end = quoted_end(q).ok_or(OfferError::Syntax)?;
                value = Some(Value::Quoted(&q[..end]));
                s = &q[end + 1..];
            } else {
                let end = v.find(|c: char| !is_tchar(c)).unwrap_or(v.len());
                if end == 0 {
                    return Err(OfferError::Syntax);
                }
                value = Some(Value::Token(&v[..end]));
                s = &v[end..];
            }
        }
        let s = trim_start(s);
        match s.strip_prefix(';') {
            Some(rest) => self.rest = rest,
            None if s.is_empty() => self.done = true,
            None => return Err(OfferError::Syntax),
        }
        Ok((name, value))
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a str, Option<Value<'a>>), OfferError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let part = self.part();
        if part.is_err() {
            self.done = true;
        }
        Some(part)
    }
}

/// The index of the closing quote in `s` (which starts after the opening one).
fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return Some(i);
        }
    }
    None
}

fn trim_start(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// A token character (RFC 9110 5.6.2).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn neg(items: &[&str]) -> Option<String> {
        negotiate(items.iter().copied(), &DeflatePolicy::default()).map(|p| p.to_string())
    }

    #[test]
    fn plain_offer_gets_server_no_context_takeover() {
        assert_eq!(
            neg(&["permessage-deflate"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn browser_offer_client_max_window_bits_without_value() {
        let p = negotiate(
            ["permessage-deflate; client_max_window_bits"],
            &DeflatePolicy::default(),
        )
        .unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert!(!p.client_no_context_takeover);
        assert_eq!(
            p.to_string(),
            "permessage-deflate; server_no_context_takeover"
        );
        // A policy that narrows the window says so, because the client let us choose.
        let policy = DeflatePolicy {
            client_max_window_bits: 10,
            ..DeflatePolicy::default()
        };
        let p = negotiate(["permessage-deflate; client_max_window_bits"], &policy).unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(
            p.to_string(),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
        );
    }

    #[test]
    fn client_window_is_not_named_unless_offered() {
        let policy = DeflatePolicy {
            client_max_window_bits: 9,
            ..DeflatePolicy::default()
        };
        let p = negotiate(["permessage-deflate"], &policy).unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert!(!p.to_string().contains("client_max_window_bits"));
        // Offered with a value: the answer is the smaller of the two.
        let p = negotiate(["permessage-deflate; client_max_window_bits=12"], &policy).unwrap();
        assert_eq!(p.client_max_window_bits, 9);
        assert!(p.to_string().ends_with("client_max_window_bits=9"));
        let p = negotiate(
            ["permessage-deflate; client_max_window_bits=8"],
            &DeflatePolicy::default(),
        )
        .unwrap();
        assert_eq!(p.client_max_window_bits, 8);
        assert_eq!(p.inflate_window_bits(), 9);
        assert!(!p.to_string().contains("client_max_window_bits"));
    }

    #[test]
    fn server_window_is_echoed() {
        assert_eq!(
            neg(&["permessage-deflate; server_max_window_bits=10"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
        );
        assert_eq!(
            neg(&["permessage-deflate; server_max_window_bits=\"12\""]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=12")
        );
    }

    #[test]
    fn server_window_of_8_declines_that_offer_only() {
        assert_eq!(neg(&["permessage-deflate; server_max_window_bits=8"]), None);
        assert_eq!(
            neg(&[
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=9"
            ])
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=9")
        );
    }

    #[test]
    fn client_no_context_takeover_offered_or_forced() {
        assert_eq!(
            neg(&["permessage-deflate; client_no_context_takeover"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        let forced = DeflatePolicy {
            client_no_context_takeover: true,
            ..DeflatePolicy::default()
        };
        let p = negotiate(["permessage-deflate"], &forced).unwrap();
        assert!(p.client_no_context_takeover);
        assert!(p.to_string().contains("; client_no_context_takeover"));
    }

    #[test]
    fn all_parameters_together_in_any_case_and_spacing() {
        let p = negotiate(
            [
                "Permessage-Deflate ;SERVER_NO_CONTEXT_TAKEOVER;\tclient_no_context_takeover ; \
              server_max_window_bits = 11; client_max_window_bits=\"1\\3\"",
            ],
            &DeflatePolicy::default(),
        )
        .unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(p.server_max_window_bits, 11);
        assert_eq!(p.client_max_window_bits, 13);
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_is_taken() {
        let bad = [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; mystery",
            "permessage-deflate; x=1",
            "permessage-deflate;",
            "permessage-deflate; ; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10 11",
            "permessage-deflate; =10",
        ];
        for offer in bad {
            assert_eq!(neg(&[offer]), None, "{offer}");
            assert_eq!(
                neg(&[offer, "permessage-deflate; client_no_context_takeover"]).as_deref(),
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
                "{offer}"
            );
        }
    }

    #[test]
    fn other_extensions_are_skipped() {
        assert_eq!(neg(&["x-webkit-deflate-frame", "foo; bar=1"]), None);
        assert_eq!(parse_offer("permessage-deflate-x"), None);
        assert_eq!(parse_offer("\"permessage-deflate\""), None);
        assert_eq!(
            neg(&["x-foo", "permessage-deflate"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn parse_reports_the_reason() {
        assert_eq!(
            parse_offer("permessage-deflate; a"),
            Some(Err(OfferError::UnknownParam))
        );
        assert_eq!(
            parse_offer("permessage-deflate; client_max_window_bits; client_max_window_bits"),
            Some(Err(OfferError::Duplicate))
        );
        assert_eq!(
            parse_offer("permessage-deflate; server_max_window_bits"),
            Some(Err(OfferError::MissingValue))
        );
        assert_eq!(
            parse_offer("permessage-deflate; server_max_window_bits=x"),
            Some(Err(OfferError::InvalidValue))
        );
        assert_eq!(
            parse_offer("permessage-deflate; server_max_window_bits=\"9"),
            Some(Err(OfferError::Syntax))
        );
        let o = parse_offer("permessage-deflate; server_max_window_bits=8")
            .unwrap()
            .unwrap();
        assert_eq!(
            accept(&o, &DeflatePolicy::default()),
            Err(OfferError::Unsupported)
        );
    }

    /// One parameter as a client may write it, with its effect on the offer.
    fn param() -> impl Strategy<Value = (usize, String)> {
        let bits = 8u8..=15;
        let quote = any::<bool>();
        prop_oneof![
            Just((0, "server_no_context_takeover".to_string())),
            Just((1, "client_no_context_takeover".to_string())),
            (bits.clone(), quote).prop_map(|(b, q)| (
                2,
                if q {
                    format!("server_max_window_bits=\"{b}\"")
                } else {
                    format!("server_max_window_bits={b}")
                }
            )),
            (proptest::option::of(bits), quote).prop_map(|(b, q)| (
                3,
                match (b, q) {
                    (None, _) => "client_max_window_bits".to_string(),
                    (Some(b), true) => format!("client_max_window_bits=\"{b}\""),
                    (Some(b), false) => format!("client_max_window_bits = {b}"),
                }
            )),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_any_header(items in proptest::collection::vec(".{0,60}", 0..4)) {
            let _ = negotiate(items.iter().map(String::as_str), &DeflatePolicy::default());
        }

        #[test]
        fn never_panics_on_near_valid_offers(s in "permessage-deflate[ ;=\"\\\\a-z_0-9]{0,60}") {
            let _ = negotiate([s.as_str()], &DeflatePolicy::default());
        }

        #[test]
        fn valid_offers_are_accepted_within_the_rules(
            params in proptest::collection::vec(param(), 0..4),
            cap in 9u8..=15,
            force in any::<bool>(),
        ) {
            let policy = DeflatePolicy { client_no_context_takeover: force, client_max_window_bits: cap };
            let mut seen = [false; 4];
            let mut dup = false;
            for (k, _) in &params {
                dup |= std::mem::replace(&mut seen[*k], true);
            }
            let offer = std::iter::once(EXTENSION_NAME.to_string())
                .chain(params.iter().map(|(_, p)| p.clone()))
                .collect::<Vec<_>>()
                .join("; ");
            let parsed = parse_offer(&offer).unwrap();
            let got = negotiate([offer.as_str()], &policy);
            if dup {
                prop_assert!(got.is_none(), "duplicate accepted: {}", offer);
                return Ok(());
            }
            let o = parsed.unwrap();
            if o.server_max_window_bits == Some(8) {
                prop_assert!(got.is_none());
                return Ok(());
            }
            let p = got.unwrap();
            let answer = p.to_string();
            prop_assert!(answer.contains("server_no_context_takeover"));
            // The answer names client_max_window_bits only if offered, never wider.
            if o.client_max_window_bits.is_none() {
                prop_assert!(!answer.contains("client_max_window_bits"));
                prop_assert_eq!(p.client_max_window_bits, 15);
            }
            if let Some(Some(b)) = o.client_max_window_bits {
                prop_assert!(p.client_max_window_bits <= b);
            }
            prop_assert!(p.client_max_window_bits <= cap.max(8) || o.client_max_window_bits.is_none());
            // server_max_window_bits is echoed exactly.
            match o.server_max_window_bits {
                Some(b) => {
                    prop_assert_eq!(p.server_max_window_bits, b);
                    let expected = format!("server_max_window_bits={}", b);
                    prop_assert!(answer.contains(&expected));
                }
                None => prop_assert!(!answer.contains("server_max_window_bits")),
            }
            prop_assert_eq!(p.client_no_context_takeover, o.client_no_context_takeover || force);
            // The answer is itself a valid offer-shaped item that parses back.
            let back = parse_offer(&answer).unwrap().unwrap();
            prop_assert!(back.server_no_context_takeover);
        }
    }
}
