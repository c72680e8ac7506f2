//! Where the token rides in an upgrade request: `Authorization: Bearer`, a
//! `Sec-WebSocket-Protocol` value, or (only when enabled) the `token` query parameter.

use std::borrow::Cow;

use crate::proto::handshake::Request;

/// The prefix of the subprotocol value that carries a token (browsers cannot set headers):
/// `Sec-WebSocket-Protocol: corecast.v1.json, corecast.bearer.<JWT>`. It is never selected,
/// so never echoed back; offer a real subprotocol beside it.
pub const TOKEN_PROTOCOL_PREFIX: &str = "corecast.bearer.";

/// The token of `req`: the `Authorization: Bearer` header first, then a subprotocol value
/// starting with [`TOKEN_PROTOCOL_PREFIX`], then, if `allow_query`, the `token` query
/// parameter.
pub fn token_from_request<'b>(req: &Request<'_, 'b>, allow_query: bool) -> Option<Cow<'b, str>> {
    if let Some(v) = req.header("authorization") {
        let v = std::str::from_utf8(v).ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        return Some(Cow::Borrowed(rest.trim()));
    }
    if let Some(t) = req
        .protocols()
        .find_map(|p| p.strip_prefix(TOKEN_PROTOCOL_PREFIX))
    {
        return Some(Cow::Borrowed(t));
    }
    if allow_query {
        let q = req.query?;
        return form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| match v {
                Cow::Borrowed(_) => Cow::Owned(v.into_owned()),
                Cow::Owned(s) => Cow::Owned(s),
            });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::{parse_request, HandshakeLimits};

    fn with_request(extra: &str, path: &str, f: impl FnOnce(&Request<'_, '_>)) {
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let (req, _) = parse_request(raw.as_bytes(), &mut headers, &HandshakeLimits::default())
            .unwrap()
            .unwrap();
        f(&req);
    }

    #[test]
    fn header_then_protocol_then_query() {
        with_request("Authorization: Bearer abc.def.ghi\r\n", "/", |r| {
            assert_eq!(token_from_request(r, false).as_deref(), Some("abc.def.ghi"));
        });
        with_request("Authorization: Basic xyz\r\n", "/", |r| {
            assert_eq!(token_from_request(r, true), None);
        });
        with_request(
            "Sec-WebSocket-Protocol: corecast.v1.json, corecast.bearer.a.b.c\r\n",
            "/",
            |r| assert_eq!(token_from_request(r, false).as_deref(), Some("a.b.c")),
        );
        with_request("", "/?x=1&token=q.r.s", |r| {
            assert_eq!(
                token_from_request(r, false),
                None,
                "query tokens are opt-in"
            );
            assert_eq!(token_from_request(r, true).as_deref(), Some("q.r.s"));
        });
    }
}
