//! Property tests of the frame codec: round trips through our encoder and decoder, and
//! interoperability with tungstenite's frame encoder and parser in both directions.

use std::io::Cursor;

use corecast::proto::{
    encode::encode_client_frame, encode_close, encode_frame, CloseCode, Decoded, Decoder,
    DecoderLimits, OpCode, ProtocolError,
};
use proptest::{prelude::*, sample::Index};
use tungstenite::protocol::frame::{
    coding::{Control, Data, OpCode as TOpCode},
    Frame as TFrame, FrameHeader as TFrameHeader,
};

/// A decoded frame, owned so results of separate runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Data(OpCode, bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn own(d: &Decoded<'_>) -> Owned {
    match d {
        Decoded::Data {
            opcode,
            fin,
            payload,
        } => Owned::Data(*opcode, *fin, payload.to_vec()),
        Decoded::Ping(p) => Owned::Ping(p.to_vec()),
        Decoded::Pong(p) => Owned::Pong(p.to_vec()),
        Decoded::Close(c) => Owned::Close(c.map(|c| (c.code.0, c.reason.to_string()))),
    }
}

/// How a run of the decoder ended: all frames decoded, then either an error or the rest of
/// the input waiting for more bytes.
type Verdict = (Vec<Owned>, Result<(), ProtocolError>);

/// Feed `input` to a fresh decoder as a reader would, appending chunks of the given sizes
/// (cycled) and dropping each frame's bytes once decoded. Stops at the first error.
fn decode_chunked(limits: DecoderLimits, input: &[u8], chunks: &[usize]) -> Verdict {
    let mut dec = Decoder::new(limits);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut sizes = chunks.iter().copied().filter(|&n| n > 0).cycle();
    loop {
        match dec.decode(&mut buf) {
            Ok(Some((d, used))) => {
                frames.push(own(&d));
                buf.drain(..used);
            }
            Ok(None) if fed < input.len() => {
                let step = sizes.next().unwrap_or(input.len());
                let end = fed.saturating_add(step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            Ok(None) => return (frames, Ok(())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

fn decode_at_once(limits: DecoderLimits, input: &[u8]) -> Verdict {
    decode_chunked(limits, input, &[input.len().max(1)])
}

/// Deterministic filler bytes, so large payloads are cheap to generate.
fn fill(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn binary_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..200),
        2 => (126usize..2000, any::<u64>()).prop_map(|(n, s)| fill(n, s)),
        1 => (65530usize..65600, any::<u64>()).prop_map(|(n, s)| fill(n, s)),
    ]
}

fn text_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => ".{0,80}".prop_map(String::into_bytes),
        2 => (".{1,12}", 1usize..400).prop_map(|(s, n)| s.repeat(n).into_bytes()),
    ]
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=125)
}

/// A protocol-valid sequence of frames (opcode, fin, payload): messages split into fragments
/// at arbitrary byte positions (code points included), pings and pongs in between.
fn frame_sequence() -> impl Strategy<Value = Vec<(OpCode, bool, Vec<u8>)>> {
    let message = (
        any::<bool>().prop_flat_map(|text| {
            let payload = if text {
                text_payload().boxed()
            } else {
                binary_payload().boxed()
            };
            (Just(text), payload)
        }),
        proptest::collection::vec(any::<Index>(), 0..4),
        proptest::collection::vec(
            proptest::option::weighted(0.3, (any::<bool>(), control_payload())),
            5,
        ),
    );
    proptest::collection::vec(message, 0..5).prop_map(|messages| {
        let mut frames = Vec::new();
        for ((text, payload), cuts, controls) in messages {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(payload.len() + 1)).collect();
            points.sort_unstable();
            points.push(payload.len());
            let mut start = 0;
            let last = points.len() - 1;
            for (i, end) in points.into_iter().enumerate() {
                if let Some(Some((ping, p))) = controls.get(i) {
                    let op = if *ping { OpCode::Ping } else { OpCode::Pong };
                    frames.push((op, true, p.clone()));
                }
                let op = match (i, text) {
                    (0, true) => OpCode::Text,
                    (0, false) => OpCode::Binary,
                    _ => OpCode::Continuation,
                };
                frames.push((op, i == last, payload[start..end].to_vec()));
                start = end;
            }
        }
        frames
    })
}

fn expected(frames: &[(OpCode, bool, Vec<u8>)]) -> Vec<Owned> {
    frames
        .iter()
        .map(|(op, fin, p)| match op {
            OpCode::Ping => Owned::Ping(p.clone()),
            OpCode::Pong => Owned::Pong(p.clone()),
            _ => Owned::Data(*op, *fin, p.clone()),
        })
        .collect()
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![1usize..8, 8usize..200, 200usize..70_000], 1..8)
}

fn to_tungstenite(op: OpCode) -> TOpCode {
    match op {
        OpCode::Continuation => TOpCode::Data(Data::Continue),
        OpCode::Text => TOpCode::Data(Data::Text),
        OpCode::Binary => TOpCode::Data(Data::Binary),
        OpCode::Close => TOpCode::Control(Control::Close),
        OpCode::Ping => TOpCode::Control(Control::Ping),
        OpCode::Pong => TOpCode::Control(Control::Pong),
    }
}

/// Parse every frame in `bytes` with tungstenite: (opcode, fin, rsv, masked, payload).
fn tungstenite_parse(bytes: &[u8]) -> Vec<(u8, bool, bool, bool, Vec<u8>)> {
    let mut cursor = Cursor::new(bytes);
    let mut out = Vec::new();
    while (cursor.position() as usize) < bytes.len() {
        let (h, len) = TFrameHeader::parse(&mut cursor)
            .expect("tungstenite accepts our header")
            .expect("header complete");
        let start = cursor.position() as usize;
        let end = start + len as usize;
        assert!(end <= bytes.len(), "payload complete");
        out.push((
            u8::from(h.opcode),
            h.is_final,
            h.rsv1 || h.rsv2 || h.rsv3,
            h.mask.is_some(),
            bytes[start..end].to_vec(),
        ));
        cursor.set_position(end as u64);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (1) Our client encoder into our decoder, fed in random chunks, round-trips.
    #[test]
    fn our_client_frames_round_trip_through_our_decoder(
        frames in frame_sequence(),
        masks in proptest::collection::vec(any::<[u8; 4]>(), 1..4),
        close in proptest::option::of((3000u16..5000, ".{0,20}")),
        chunks in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for (i, (op, fin, p)) in frames.iter().enumerate() {
            encode_client_frame(*op, *fin, p, masks[i % masks.len()], &mut wire);
        }
        let mut want = expected(&frames);
        if let Some((code, reason)) = &close {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            encode_client_frame(OpCode::Close, true, &payload, masks[0], &mut wire);
            want.push(Owned::Close(Some((*code, reason.clone()))));
        }
        let got = decode_chunked(DecoderLimits::default(), &wire, &chunks);
        prop_assert_eq!(&got, &(want, Ok(())));
        prop_assert_eq!(decode_at_once(DecoderLimits::default(), &wire), got);
    }

    /// (2) tungstenite's masked frames decode to the same payloads with our decoder.
    #[test]
    fn tungstenite_client_frames_decode_with_our_decoder(
        frames in frame_sequence(),
        mask in any::<[u8; 4]>(),
        chunks in chunk_sizes(),
    ) {
        let mut wire = Vec::new();
        for (op, fin, p) in &frames {
            let header = TFrameHeader {
                is_final: *fin,
                opcode: to_tungstenite(*op),
                mask: Some(mask),
                ..TFrameHeader::default()
            };
            TFrame::from_payload(header, p.clone().into()).format(&mut wire).unwrap();
        }
        let got = decode_chunked(DecoderLimits::default(), &wire, &chunks);
        prop_assert_eq!(got, (expected(&frames), Ok(())));
    }

    /// (3) Our server frames parse with tungstenite into the same frames, unmasked.
    #[test]
    fn our_server_frames_parse_with_tungstenite(
        frames in frame_sequence(),
        close in proptest::option::of((1000u16..5000, ".{0,200}")),
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (op, fin, p) in &frames {
            encode_frame(*op, *fin, p, &mut wire);
            want.push((op.as_u8(), *fin, false, false, p.clone()));
        }
        if let Some((code, reason)) = &close {
            encode_close(Some(CloseCode(*code)), reason, &mut wire);
            let mut cut = reason.len().min(123);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(&reason.as_bytes()[..cut]);
            want.push((0x8, true, false, false, payload));
        }
        prop_assert_eq!(tungstenite_parse(&wire), want);
    }

    /// (4) Arbitrary bytes never panic the decoder, and chunking never changes the verdict.
    #[test]
    fn arbitrary_bytes_same_verdict_in_any_chunking(
        input in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..400),
            mutated_wire(),
        ],
        chunks in proptest::collection::vec(1usize..40, 1..8),
        max_frame in prop_oneof![Just(16usize << 20), 0usize..300],
        max_message in prop_oneof![Just(16usize << 20), 0usize..600],
    ) {
        let limits = DecoderLimits { max_frame, max_message };
        let at_once = decode_at_once(limits, &input);
        prop_assert_eq!(decode_chunked(limits, &input, &chunks), at_once.clone());
        prop_assert_eq!(decode_chunked(limits, &input, &[1]), at_once);
    }
}

/// Valid client wire bytes with a few bytes overwritten, inserted or removed.
fn mutated_wire() -> impl Strategy<Value = Vec<u8>> {
    (
        frame_sequence(),
        any::<[u8; 4]>(),
        proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 0..4),
        proptest::option::of(any::<Index>()),
    )
        .prop_map(|(frames, mask, edits, cut)| {
            let mut wire = Vec::new();
            for (op, fin, p) in &frames {
                encode_client_frame(*op, *fin, p, mask, &mut wire);
            }
            for (at, byte, kind) in edits {
                let i = at.index(wire.len() + 1);
                match kind {
                    0 if i < wire.len() => wire[i] = byte,
                    1 => wire.insert(i, byte),
                    _ if i < wire.len() => {
                        wire.remove(i);
                    }
                    _ => {}
                }
            }
            if let Some(c) = cut {
                wire.truncate(c.index(wire.len() + 1));
            }
            wire
        })
}

#[test]
fn tungstenite_close_frame_decodes_with_our_decoder() {
    let header = TFrameHeader {
        opcode: TOpCode::Control(Control::Close),
        mask: Some([1, 2, 3, 4]),
        ..TFrameHeader::default()
    };
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice("au revoir ✓".as_bytes());
    let mut wire = Vec::new();
    TFrame::from_payload(header, payload.into())
        .format(&mut wire)
        .unwrap();
    let got = decode_at_once(DecoderLimits::default(), &wire);
    assert_eq!(
        got,
        (
            vec![Owned::Close(Some((1001, "au revoir ✓".to_string())))],
            Ok(())
        )
    );
}

#[test]
fn tungstenite_unmasked_frame_is_rejected() {
    let mut wire = Vec::new();
    TFrame::message(b"hi".to_vec(), TOpCode::Data(Data::Text), true)
        .format(&mut wire)
        .unwrap();
    assert_eq!(
        decode_at_once(DecoderLimits::default(), &wire).1,
        Err(ProtocolError::UnmaskedFrame)
    );
}
