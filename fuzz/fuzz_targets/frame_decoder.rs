//! Fuzz the frame decoder: arbitrary bytes from a client must never panic, and the outcome
//! must not depend on how the bytes were split across reads.
//!
//! The input is decoded twice: in one read, and in two reads split at a point derived from
//! the first byte. Both runs must decode the same frames and end with the same verdict.
#![no_main]

use corecast::proto::{Decoded, Decoder, DecoderLimits, ProtocolError};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecoderLimits = DecoderLimits {
    max_frame: 1 << 16,
    max_message: 1 << 18,
};

/// What a decoded frame was, owned, so two runs can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Data {
        opcode: u8,
        fin: bool,
        payload: Vec<u8>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn event(frame: &Decoded<'_>) -> Event {
    match frame {
        Decoded::Data {
            opcode,
            fin,
            payload,
        } => {
            assert!(
                payload.len() <= LIMITS.max_frame,
                "data payload over max_frame"
            );
            Event::Data {
                opcode: opcode.as_u8(),
                fin: *fin,
                payload: payload.to_vec(),
            }
        }
        Decoded::Ping(p) => {
            assert!(p.len() <= 125, "ping payload over 125 bytes");
            Event::Ping(p.to_vec())
        }
        Decoded::Pong(p) => {
            assert!(p.len() <= 125, "pong payload over 125 bytes");
            Event::Pong(p.to_vec())
        }
        Decoded::Close(c) => Event::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
    }
}

/// Feed `chunks` one after another into a fresh decoder, appending each to the read buffer
/// and draining every decoded frame. Stops at the first error.
fn run(chunks: &[&[u8]]) -> (Vec<Event>, Option<ProtocolError>) {
    let mut decoder = Decoder::new(LIMITS);
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let len = buf.len();
            let used = match decoder.decode(&mut buf) {
                Err(e) => return (events, Some(e)),
                Ok(None) => break,
                Ok(Some((frame, used))) => {
                    assert!((2..=len).contains(&used), "consumed {used} of {len} bytes");
                    events.push(event(&frame));
                    used
                }
            };
            buf.drain(..used);
        }
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    let split = match data.first() {
        Some(&b) => (b as usize * (data.len() + 1)) / 256,
        None => 0,
    };
    let (head, tail) = data.split_at(split);
    let parts = run(&[head, tail]);
    assert_eq!(
        whole.1.is_some(),
        parts.1.is_some(),
        "verdict differs when split at {split}: {:?} vs {:?}",
        whole.1,
        parts.1
    );
    assert_eq!(whole, parts, "outcome differs when split at {split}");
});
