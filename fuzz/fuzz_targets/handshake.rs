//! Fuzz the upgrade handshake: arbitrary bytes must never panic, every outcome must be
//! answerable (`101` or a rejection with no injected header lines), and an incomplete
//! request must consume nothing.
//!
//! The prefix check: parsing a prefix of the input either waits (`Ok(None)`), or reaches the
//! same verdict as the whole input (a prefix never sees a complete head the whole does not).
#![no_main]

use corecast::proto::handshake::{
    accept_key, parse_request, select_protocol, write_accept, write_reject, HandshakeError,
    HandshakeLimits, ACCEPT_KEY_LEN,
};
use libfuzzer_sys::fuzz_target;

/// The outcome without the borrows: the head length, or the error.
type Verdict = Result<Option<usize>, HandshakeError>;

/// Number of CRLF-terminated lines before the blank line that ends a response head.
fn head_lines(response: &[u8]) -> usize {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head has no end");
    response[..end + 2]
        .windows(2)
        .filter(|w| *w == b"\r\n")
        .count()
}

/// Parse `buf` with 32 header slots and the default limits; answer it as the server would.
fn parse_and_answer(buf: &[u8]) -> Verdict {
    let limits = HandshakeLimits::default();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut out = Vec::new();
    match parse_request(buf, &mut headers, &limits) {
        Ok(Some((req, head_len))) => {
            assert!(
                head_len > 0 && head_len <= buf.len(),
                "head_len {head_len} of {}",
                buf.len()
            );
            assert!(head_len <= limits.max_head_bytes);
            assert!(req.path.starts_with('/'));
            assert!(!req.host.is_empty());
            assert_eq!(accept_key(req.key.as_bytes()).len(), ACCEPT_KEY_LEN);
            let _ = req.header("origin");
            for (name, value) in req.headers() {
                assert!(!name.is_empty());
                let _ = value.len();
            }
            let supported = ["chat".to_string(), "v2.corecast".to_string()];
            let protocol = select_protocol(req.protocols(), &supported);
            for p in req.protocols() {
                assert!(!p.is_empty() && !p.contains(','));
            }
            let extension = req.extensions().next();
            for e in req.extensions() {
                assert!(!e.is_empty());
            }
            write_accept(req.key, protocol, extension, &mut out);
            assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            let expected = 4 + usize::from(protocol.is_some()) + usize::from(extension.is_some());
            assert_eq!(head_lines(&out), expected, "101 answer has injected lines");
            Ok(Some(head_len))
        }
        Ok(None) => {
            assert!(buf.len() <= limits.max_head_bytes, "waiting past the limit");
            Ok(None)
        }
        Err(err) => {
            let status = err.status();
            assert!(matches!(status, 400 | 426 | 431), "status {status}");
            assert!(!err.label().is_empty() && !err.label().contains(' '));
            write_reject(status, err.reason(), &mut out);
            let expected = 4 + usize::from(status == 426);
            assert_eq!(head_lines(&out), expected, "rejection has injected lines");
            Err(err)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = parse_and_answer(data);
    let cut = match data.last() {
        Some(&b) => (b as usize * data.len()) / 256,
        None => 0,
    };
    let prefix = parse_and_answer(&data[..cut]);
    match prefix {
        // Incomplete: nothing consumed, and the whole input may still go any way.
        Ok(None) => {}
        Ok(Some(n)) => {
            assert!(n <= cut, "prefix of {cut} bytes consumed {n}");
            assert_eq!(
                whole,
                Ok(Some(n)),
                "prefix saw a complete head the whole did not"
            );
        }
        Err(e) => assert_eq!(whole, Err(e), "prefix verdict differs from the whole"),
    }
});
