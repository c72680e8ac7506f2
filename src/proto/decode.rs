//! The frame decoder: validates client frames and yields payloads unmasked in place.
//!
//! Contract: `decode` looks at the start of the caller's buffer. When the frame there is not
//! complete it returns `Ok(None)` and consumes nothing; it may already have unmasked and
//! validated the payload bytes present (it remembers how far), so the caller must keep those
//! bytes in place and only append. Limits are checked on the header, before any payload is
//! buffered. Text payloads are validated incrementally and fail at the first invalid byte.

use super::{
    close::{parse_close_payload, CloseFrame},
    error::ProtocolError,
    frame::{HeaderPrefix, OpCode},
    mask::unmask,
    utf8::Utf8Validator,
};

/// Size limits enforced by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest payload of a single frame.
    pub max_frame: usize,
    /// Largest message (sum of its fragments' payloads).
    pub max_message: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_frame: 16 << 20,
            max_message: 16 << 20,
        }
    }
}

/// One decoded frame, its payload borrowed from (and unmasked in) the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A data frame. `opcode` is `Text` or `Binary` on the first frame of a message and
    /// `Continuation` after; `fin` marks the last frame. Text is already UTF-8 validated,
    /// including across fragments (a code point may straddle two fragments).
    Data {
        /// Opcode as sent.
        opcode: OpCode,
        /// FIN bit.
        fin: bool,
        /// Unmasked payload.
        payload: &'a [u8],
    },
    /// A ping with its payload (at most 125 bytes).
    Ping(&'a [u8]),
    /// A pong with its payload (at most 125 bytes).
    Pong(&'a [u8]),
    /// A close frame: `None` when it carried no status code.
    Close(Option<CloseFrame<'a>>),
}

/// The per-connection decoding state machine.
#[derive(Debug)]
pub struct Decoder {
    limits: DecoderLimits,
    /// Payload bytes of the current message's earlier fragments.
    msg_len: usize,
    /// Payload bytes of the frame under way already unmasked (and validated, for text).
    progress: usize,
    /// Header plus payload length of the frame under way; 0 while no header is known.
    frame_len: usize,
    /// UTF-8 state of the text message under way (a code point may straddle fragments).
    utf8: Utf8Validator,
    rsv_allowed: u8,
    /// The message state: [`IN_MESSAGE`], [`MSG_TEXT`], [`COMPRESSED`] (one byte keeps the
    /// decoder at 48 bytes, and it lives in every connection).
    flags: u8,
}

/// A fragmented message is under way.
const IN_MESSAGE: u8 = 1;
/// The message under way is text to validate (not binary, not compressed).
const MSG_TEXT: u8 = 2;
/// The current (or last) message had RSV1 set on its first frame: permessage-deflate.
const COMPRESSED: u8 = 4;

impl Decoder {
    /// A decoder enforcing `limits`, with no RSV bits allowed.
    pub fn new(limits: DecoderLimits) -> Self {
        Decoder {
            limits,
            msg_len: 0,
            progress: 0,
            frame_len: 0,
            utf8: Utf8Validator::new(),
            rsv_allowed: 0,
            flags: 0,
        }
    }

    /// Allow the RSV bits (low three bits, RSV1 = 0b100) that a negotiated extension claimed.
    ///
    /// A text message whose first frame has RSV1 set is compressed: its payload is not UTF-8
    /// validated here, the extension validates it after inflating. RSV1 (permessage-deflate,
    /// RFC 7692 6.1) is only ever legal on the first frame of a data message: on a control or
    /// continuation frame it fails with [`ProtocolError::ReservedBits`] (1002).
    pub fn set_rsv_allowed(&mut self, rsv: u8) {
        self.rsv_allowed = rsv & 0b111;
    }

    /// Whether the current message (or the last one, once complete) had RSV1 set on its first
    /// frame, i.e. is compressed with permessage-deflate.
    pub fn message_compressed(&self) -> bool {
        self.flags & COMPRESSED != 0
    }

    fn flag(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    fn set_flag(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }

    /// Decode one frame from the start of `buf`, unmasking its payload in place.
    ///
    /// Returns the frame and the number of bytes it occupied; the caller drops those bytes
    /// once it is done with the frame. `Ok(None)`: incomplete, nothing consumed.
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Option<(Decoded<'a>, usize)>, ProtocolError> {
        let result = self.decode_frame(buf);
        if result.is_err() {
            self.progress = 0;
            self.frame_len = 0;
        }
        result
    }

    fn decode_frame<'a>(
        &mut self,
        buf: &'a mut [u8],
    ) -> Result<Option<(Decoded<'a>, usize)>, ProtocolError> {
        let Some(head) = HeaderPrefix::parse(buf)? else {
            return Ok(None);
        };
        let payload_len = self.check(&head)?;
        // The mask bit is set (checked), so the 4-byte key follows the length.
        let header_len = head.len_end + 4;
        let frame_len = header_len
            .checked_add(payload_len)
            .ok_or(ProtocolError::FrameTooLarge)?;
        self.frame_len = frame_len;
        let key = match buf.get(head.len_end..header_len) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => return Ok(None),
        };

        let text = match head.opcode {
            OpCode::Text => head.rsv & 0b100 == 0,
            OpCode::Continuation => self.flag(MSG_TEXT),
            _ => false,
        };
        if head.opcode == OpCode::Text && self.progress == 0 {
            self.utf8.reset();
        }

        // Unmask (and validate) the payload bytes that arrived since the last call.
        let done = self.progress.min(payload_len);
        let avail = buf.len().min(frame_len);
        let start = header_len + done;
        if let Some(fresh) = buf.get_mut(start..avail) {
            unmask(fresh, key, done);
            if text {
                self.utf8.feed(fresh)?;
            }
            self.progress = avail - header_len;
        }
        if avail < frame_len {
            return Ok(None);
        }

        // The frame is complete.
        self.progress = 0;
        self.frame_len = 0;
        let buf: &'a [u8] = buf;
        let payload = buf.get(header_len..frame_len).unwrap_or_default();
        let decoded = match head.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if head.opcode != OpCode::Continuation {
                    self.set_flag(COMPRESSED, head.rsv & 0b100 != 0);
                }
                if head.fin {
                    if text {
                        self.utf8.finish()?;
                    }
                    self.set_flag(IN_MESSAGE | MSG_TEXT, false);
                    self.msg_len = 0;
                } else if head.opcode == OpCode::Continuation {
                    self.msg_len = self.msg_len.saturating_add(payload_len);
                } else {
                    self.set_flag(IN_MESSAGE, true);
                    self.set_flag(MSG_TEXT, text);
                    self.msg_len = payload_len;
                }
                Decoded::Data {
                    opcode: head.opcode,
                    fin: head.fin,
                    payload,
                }
            }
            OpCode::Ping => Decoded::Ping(payload),
            OpCode::Pong => Decoded::Pong(payload),
            OpCode::Close => Decoded::Close(parse_close_payload(payload)?),
        };
        Ok(Some((decoded, frame_len)))
    }

    /// The policy checks on a header, in order; returns the payload length.
    fn check(&self, head: &HeaderPrefix) -> Result<usize, ProtocolError> {
        if head.rsv & !self.rsv_allowed != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let control = head.opcode.is_control();
        if head.rsv & 0b100 != 0 && (control || head.opcode == OpCode::Continuation) {
            // RSV1 marks a compressed message on its first frame only (RFC 7692 6.1).
            return Err(ProtocolError::ReservedBits);
        }
        if !head.masked {
            return Err(ProtocolError::UnmaskedFrame);
        }
        if control {
            if !head.fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if head.payload_len > 125 {
                return Err(ProtocolError::ControlTooLong);
            }
        } else if head.opcode == OpCode::Continuation {
            if !self.flag(IN_MESSAGE) {
                return Err(ProtocolError::UnexpectedContinuation);
            }
        } else if self.flag(IN_MESSAGE) {
            return Err(ProtocolError::ExpectedContinuation);
        }
        let len = usize::try_from(head.payload_len)
            .ok()
            .filter(|&n| n <= self.limits.max_frame)
            .ok_or(ProtocolError::FrameTooLarge)?;
        if !control {
            let before = if self.flag(IN_MESSAGE) {
                self.msg_len
            } else {
                0
            };
            match before.checked_add(len) {
                Some(total) if total <= self.limits.max_message => {}
                _ => return Err(ProtocolError::MessageTooLarge),
            }
        }
        Ok(len)
    }

    /// Total bytes (header included) of the frame under way, once its header is known.
    /// Lets the caller size its buffer for a large frame in one step.
    pub fn frame_len_hint(&self) -> Option<usize> {
        (self.frame_len != 0).then_some(self.frame_len)
    }

    /// Whether a fragmented message is under way.
    pub fn in_message(&self) -> bool {
        self.flag(IN_MESSAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{close::CloseCode, encode::encode_client_frame};

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A masked client frame.
    fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_client_frame(opcode, fin, payload, KEY, &mut out);
        out
    }

    /// A frame owned, to compare results across calls.
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

    /// Decode everything in `input`, appending `step` bytes at a time as a reader would.
    /// Returns the frames and the error (if any); stops at the first error.
    fn run(dec: &mut Decoder, input: &[u8], step: usize) -> (Vec<Owned>, Option<ProtocolError>) {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some((d, used))) => {
                    out.push(own(&d));
                    buf.drain(..used);
                }
                Ok(None) if fed < input.len() => {
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn decode_all(input: &[u8]) -> (Vec<Owned>, Option<ProtocolError>) {
        run(
            &mut Decoder::new(DecoderLimits::default()),
            input,
            input.len().max(1),
        )
    }

    fn first_error(input: &[u8]) -> Option<ProtocolError> {
        decode_all(input).1
    }

    #[test]
    fn decoder_stays_small() {
        // It lives in every connection.
        assert!(
            std::mem::size_of::<Decoder>() <= 64,
            "{}",
            std::mem::size_of::<Decoder>()
        );
        // 48 bytes on 64-bit targets: limits 16, three lengths 24, UTF-8 state 5, RSV and flags 2.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Decoder>(), 48);
    }

    #[test]
    fn decodes_every_opcode() {
        let mut input = frame(OpCode::Text, true, "héllo".as_bytes());
        input.extend(frame(OpCode::Binary, true, &[0, 255, 1]));
        input.extend(frame(OpCode::Ping, true, b"p"));
        input.extend(frame(OpCode::Pong, true, b""));
        input.extend(frame(OpCode::Binary, false, b"ab"));
        input.extend(frame(OpCode::Continuation, true, b"cd"));
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        input.extend(frame(OpCode::Close, true, &close));
        let (frames, err) = decode_all(&input);
        assert_eq!(err, None);
        assert_eq!(
            frames,
            vec![
                Owned::Data(OpCode::Text, true, "héllo".as_bytes().to_vec()),
                Owned::Data(OpCode::Binary, true, vec![0, 255, 1]),
                Owned::Ping(b"p".to_vec()),
                Owned::Pong(vec![]),
                Owned::Data(OpCode::Binary, false, b"ab".to_vec()),
                Owned::Data(OpCode::Continuation, true, b"cd".to_vec()),
                Owned::Close(Some((1000, "bye".to_string()))),
            ]
        );
    }

    #[test]
    fn returns_consumed_length_and_borrows_unmasked_payload() {
        let mut buf = frame(OpCode::Binary, true, &[9; 200]);
        buf.extend_from_slice(&[0x81, 0x80]); // start of the next frame
        let mut dec = Decoder::new(DecoderLimits::default());
        let (d, used) = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(used, 4 + 4 + 200);
        assert_eq!(
            d,
            Decoded::Data {
                opcode: OpCode::Binary,
                fin: true,
                payload: &[9; 200]
            }
        );
    }

    #[test]
    fn empty_close_has_no_code() {
        assert_eq!(
            decode_all(&frame(OpCode::Close, true, b"")).0,
            vec![Owned::Close(None)]
        );
    }

    #[test]
    fn incomplete_input_returns_none() {
        let input = frame(OpCode::Text, true, b"hello");
        let mut dec = Decoder::new(DecoderLimits::default());
        for n in 0..input.len() {
            let mut buf = input[..n].to_vec();
            assert_eq!(dec.decode(&mut buf), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn fragmented_text_with_interleaved_ping_pong_close() {
        let mut input = frame(OpCode::Text, false, b"hel");
        input.extend(frame(OpCode::Ping, true, b"1"));
        input.extend(frame(OpCode::Continuation, false, b"lo "));
        input.extend(frame(OpCode::Pong, true, b"2"));
        input.extend(frame(OpCode::Continuation, true, b"world"));
        input.extend(frame(OpCode::Close, true, &1001u16.to_be_bytes()));
        let mut dec = Decoder::new(DecoderLimits::default());
        let (frames, err) = run(&mut dec, &input, input.len());
        assert_eq!(err, None);
        assert_eq!(
            frames,
            vec![
                Owned::Data(OpCode::Text, false, b"hel".to_vec()),
                Owned::Ping(b"1".to_vec()),
                Owned::Data(OpCode::Continuation, false, b"lo ".to_vec()),
                Owned::Pong(b"2".to_vec()),
                Owned::Data(OpCode::Continuation, true, b"world".to_vec()),
                Owned::Close(Some((1001, String::new()))),
            ]
        );
        assert!(!dec.in_message());
    }

    #[test]
    fn in_message_tracks_fragmentation() {
        let mut dec = Decoder::new(DecoderLimits::default());
        assert!(!dec.in_message());
        let mut f = frame(OpCode::Binary, false, b"a");
        dec.decode(&mut f).unwrap().unwrap();
        assert!(dec.in_message());
        let mut p = frame(OpCode::Ping, true, b"");
        dec.decode(&mut p).unwrap().unwrap();
        assert!(dec.in_message());
        let mut c = frame(OpCode::Continuation, true, b"b");
        dec.decode(&mut c).unwrap().unwrap();
        assert!(!dec.in_message());
    }

    #[test]
    fn code_point_straddling_fragments_with_ping_between() {
        let euro = "€".as_bytes();
        let mut input = frame(OpCode::Text, false, &euro[..1]);
        input.extend(frame(OpCode::Ping, true, b""));
        input.extend(frame(OpCode::Continuation, false, &euro[1..2]));
        input.extend(frame(OpCode::Continuation, true, &euro[2..]));
        assert_eq!(first_error(&input), None);
    }

    #[test]
    fn byte_by_byte_feeding_equals_feeding_at_once() {
        let mut input = frame(OpCode::Text, false, "κόσμε ".as_bytes());
        input.extend(frame(OpCode::Ping, true, b"ping"));
        input.extend(frame(
            OpCode::Continuation,
            true,
            "€𝄞".repeat(50).as_bytes(),
        ));
        input.extend(frame(OpCode::Binary, true, &(0..=255).collect::<Vec<u8>>()));
        input.extend(frame(OpCode::Binary, true, &vec![7; 70_000]));
        input.extend(frame(OpCode::Text, true, b""));
        input.extend(frame(OpCode::Close, true, &[0x03, 0xE8, b'o', b'k']));
        let at_once = decode_all(&input);
        assert_eq!(at_once.1, None);
        assert_eq!(at_once.0.len(), 7);
        for step in [1, 2, 3, 5, 7, 13, 64, 1000] {
            let mut dec = Decoder::new(DecoderLimits::default());
            assert_eq!(run(&mut dec, &input, step), at_once, "step {step}");
        }
    }

    #[test]
    fn byte_by_byte_errors_equal_errors_at_once() {
        let cases: Vec<Vec<u8>> = vec![
            frame(OpCode::Text, true, &[b'a', 0xFF, b'b']),
            frame(OpCode::Text, true, &[b'a', 0xE2, 0x82]),
            frame(OpCode::Close, true, &[0x03, 0xE8, 0xFF]),
            frame(OpCode::Close, true, &[0x03]),
            frame(OpCode::Close, true, &[0x03, 0xED]),
            frame(OpCode::Continuation, true, b"x"),
            [
                frame(OpCode::Text, false, b"a"),
                frame(OpCode::Binary, true, b"b"),
            ]
            .concat(),
        ];
        for input in cases {
            let at_once = decode_all(&input);
            assert!(at_once.1.is_some());
            let mut dec = Decoder::new(DecoderLimits::default());
            assert_eq!(run(&mut dec, &input, 1), at_once);
        }
    }

    #[test]
    fn invalid_utf8_in_first_bytes_of_big_text_frame_fails_before_the_rest_arrives() {
        let mut payload = vec![b'a'; 1 << 20];
        payload[3] = 0xC0;
        let input = frame(OpCode::Text, true, &payload);
        let mut dec = Decoder::new(DecoderLimits::default());
        // Header (10 bytes + key) and the first 4 payload bytes only.
        let mut buf = input[..14 + 4].to_vec();
        assert_eq!(dec.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
        // The same in two steps: the good bytes first.
        let mut dec = Decoder::new(DecoderLimits::default());
        let mut buf = input[..14 + 3].to_vec();
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(&buf[14..], b"aaa", "present bytes are unmasked in place");
        buf.push(input[14 + 3]);
        assert_eq!(dec.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn invalid_utf8_in_continuation_fails_fast() {
        let mut input = frame(OpCode::Text, false, &[0xF4]);
        input.extend(frame(OpCode::Continuation, true, &[0x90, 0x80, 0x80]));
        let mut dec = Decoder::new(DecoderLimits::default());
        let mut buf = input[..7].to_vec();
        dec.decode(&mut buf).unwrap().unwrap();
        // Header of the continuation and its first payload byte.
        let mut buf = input[7..7 + 6 + 1].to_vec();
        assert_eq!(dec.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn incomplete_code_point_at_end_of_message_is_invalid_utf8() {
        let input = frame(OpCode::Text, true, &[b'a', 0xE2, 0x82]);
        assert_eq!(first_error(&input), Some(ProtocolError::InvalidUtf8));
        let mut input = frame(OpCode::Text, false, b"ok");
        input.extend(frame(OpCode::Continuation, true, &[0xF0, 0x9F]));
        assert_eq!(first_error(&input), Some(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn binary_is_not_utf8_validated() {
        let mut input = frame(OpCode::Binary, false, &[0xFF]);
        input.extend(frame(OpCode::Continuation, true, &[0xC0, 0xE2]));
        assert_eq!(first_error(&input), None);
    }

    #[test]
    fn unknown_opcode_is_rejected() {
        for op in [3u8, 7, 0xB, 0xF] {
            assert_eq!(
                first_error(&[0x80 | op, 0x80]),
                Some(ProtocolError::UnknownOpcode(op))
            );
        }
    }

    #[test]
    fn invalid_64_bit_length_is_rejected() {
        let mut input = vec![0x82, 0xFF];
        input.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(first_error(&input), Some(ProtocolError::InvalidLength));
    }

    #[test]
    fn reserved_bits_rejected_unless_allowed() {
        let mut input = frame(OpCode::Binary, true, b"x");
        input[0] |= 0x40; // RSV1
        assert_eq!(first_error(&input), Some(ProtocolError::ReservedBits));
        let mut dec = Decoder::new(DecoderLimits::default());
        dec.set_rsv_allowed(0b100);
        assert_eq!(run(&mut dec, &input, 1).1, None);
        let mut rsv2 = frame(OpCode::Binary, true, b"x");
        rsv2[0] |= 0x20;
        let mut dec = Decoder::new(DecoderLimits::default());
        dec.set_rsv_allowed(0b100);
        assert_eq!(dec.decode(&mut rsv2), Err(ProtocolError::ReservedBits));
    }

    #[test]
    fn rsv1_only_on_the_first_frame_of_a_data_message() {
        let mut dec = Decoder::new(DecoderLimits::default());
        dec.set_rsv_allowed(0b100);
        // Allowed: first frame of text and binary, fragmented or not.
        let mut input = frame(OpCode::Text, false, b"a");
        input[0] |= 0x40;
        input.extend(frame(OpCode::Continuation, true, b"b"));
        let mut bin = frame(OpCode::Binary, true, b"c");
        bin[0] |= 0x40;
        input.extend(bin);
        assert_eq!(run(&mut dec, &input, 1).1, None);
        assert!(dec.message_compressed());
        let mut plain = frame(OpCode::Binary, true, b"d");
        dec.decode(&mut plain).unwrap().unwrap();
        assert!(!dec.message_compressed());
        // Refused on control frames and on continuations, even when negotiated.
        for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            let mut f = frame(op, true, b"");
            f[0] |= 0x40;
            let mut dec = Decoder::new(DecoderLimits::default());
            dec.set_rsv_allowed(0b100);
            assert_eq!(
                dec.decode(&mut f),
                Err(ProtocolError::ReservedBits),
                "{op:?}"
            );
        }
        let mut input = frame(OpCode::Text, false, b"a");
        input[0] |= 0x40;
        let mut cont = frame(OpCode::Continuation, true, b"b");
        cont[0] |= 0x40;
        input.extend(cont);
        let mut dec = Decoder::new(DecoderLimits::default());
        dec.set_rsv_allowed(0b100);
        assert_eq!(
            run(&mut dec, &input, 3).1,
            Some(ProtocolError::ReservedBits)
        );
        // Not negotiated: refused everywhere.
        let mut f = frame(OpCode::Text, true, b"x");
        f[0] |= 0x40;
        assert_eq!(first_error(&f), Some(ProtocolError::ReservedBits));
    }

    #[test]
    fn compressed_text_is_left_to_the_extension() {
        let mut input = frame(OpCode::Text, false, &[0xFF]);
        input[0] |= 0x40;
        input.extend(frame(OpCode::Continuation, true, &[0xC0]));
        let mut dec = Decoder::new(DecoderLimits::default());
        dec.set_rsv_allowed(0b100);
        assert_eq!(run(&mut dec, &input, 1).1, None);
    }

    #[test]
    fn unmasked_frame_is_rejected_after_two_bytes() {
        let mut dec = Decoder::new(DecoderLimits::default());
        assert_eq!(
            dec.decode(&mut [0x81, 0x05]),
            Err(ProtocolError::UnmaskedFrame)
        );
    }

    #[test]
    fn fragmented_control_is_rejected() {
        for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            let input = frame(op, false, b"");
            assert_eq!(
                first_error(&input),
                Some(ProtocolError::FragmentedControl),
                "{op:?}"
            );
        }
    }

    #[test]
    fn control_over_125_bytes_is_rejected_before_payload() {
        let mut dec = Decoder::new(DecoderLimits::default());
        let input = frame(OpCode::Ping, true, &[0; 126]);
        let mut header_only = input[..4].to_vec();
        assert_eq!(
            dec.decode(&mut header_only),
            Err(ProtocolError::ControlTooLong)
        );
        assert_eq!(first_error(&frame(OpCode::Ping, true, &[0; 125])), None);
    }

    #[test]
    fn unexpected_continuation_is_rejected() {
        let input = frame(OpCode::Continuation, false, b"x");
        assert_eq!(
            first_error(&input),
            Some(ProtocolError::UnexpectedContinuation)
        );
        // After a message ended, a continuation is again unexpected.
        let mut input = frame(OpCode::Text, true, b"a");
        input.extend(frame(OpCode::Continuation, true, b"b"));
        assert_eq!(
            first_error(&input),
            Some(ProtocolError::UnexpectedContinuation)
        );
    }

    #[test]
    fn new_message_during_fragmented_one_is_rejected() {
        for op in [OpCode::Text, OpCode::Binary] {
            let mut input = frame(OpCode::Binary, false, b"a");
            input.extend(frame(op, true, b"b"));
            assert_eq!(
                first_error(&input),
                Some(ProtocolError::ExpectedContinuation)
            );
        }
    }

    #[test]
    fn frame_too_large_is_rejected_on_header() {
        let limits = DecoderLimits {
            max_frame: 100,
            max_message: 1000,
        };
        let mut dec = Decoder::new(limits);
        let input = frame(OpCode::Binary, true, &[0; 101]);
        let mut header = input[..2].to_vec();
        assert_eq!(dec.decode(&mut header), Err(ProtocolError::FrameTooLarge));
        let mut dec = Decoder::new(limits);
        let mut ok = frame(OpCode::Binary, true, &[0; 100]);
        assert!(dec.decode(&mut ok).unwrap().is_some());
    }

    #[test]
    fn header_claiming_2_pow_62_fails_after_10_bytes_without_allocating() {
        let mut head = vec![0x82, 0xFF];
        head.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let mut dec = Decoder::new(DecoderLimits::default());
        assert_eq!(dec.decode(&mut head[..9]), Ok(None));
        assert_eq!(dec.decode(&mut head), Err(ProtocolError::FrameTooLarge));
        let limits = DecoderLimits {
            max_frame: usize::MAX,
            max_message: usize::MAX,
        };
        let mut dec = Decoder::new(limits);
        // With no limit it waits for the key, then the payload: no overflow, no allocation.
        head.extend_from_slice(&KEY);
        assert_eq!(dec.decode(&mut head), Ok(None));
        assert_eq!(dec.frame_len_hint(), Some(14 + (1 << 62)));
    }

    #[test]
    fn largest_valid_length_does_not_overflow() {
        let mut head = vec![0x82, 0xFF];
        head.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        head.extend_from_slice(&KEY);
        let limits = DecoderLimits {
            max_frame: usize::MAX,
            max_message: usize::MAX,
        };
        let mut dec = Decoder::new(limits);
        match usize::try_from(u64::MAX >> 1) {
            Ok(len) => {
                assert_eq!(dec.decode(&mut head), Ok(None));
                assert_eq!(dec.frame_len_hint(), Some(14 + len));
            }
            Err(_) => assert_eq!(dec.decode(&mut head), Err(ProtocolError::FrameTooLarge)),
        }
    }

    #[test]
    fn message_too_large_is_rejected_on_header_of_fragment() {
        let limits = DecoderLimits {
            max_frame: 100,
            max_message: 150,
        };
        let mut dec = Decoder::new(limits);
        let mut a = frame(OpCode::Binary, false, &[0; 100]);
        dec.decode(&mut a).unwrap().unwrap();
        let mut p = frame(OpCode::Ping, true, &[0; 100]);
        dec.decode(&mut p).unwrap().unwrap(); // control frames do not count
        let mut b = frame(OpCode::Continuation, false, &[0; 50]);
        dec.decode(&mut b).unwrap().unwrap();
        let c = frame(OpCode::Continuation, true, &[0; 1]);
        let mut header_only = c[..2].to_vec();
        assert_eq!(
            dec.decode(&mut header_only),
            Err(ProtocolError::MessageTooLarge)
        );
        // A single frame bigger than max_message.
        let limits = DecoderLimits {
            max_frame: 100,
            max_message: 10,
        };
        let mut dec = Decoder::new(limits);
        assert_eq!(
            dec.decode(&mut frame(OpCode::Text, true, &[b'a'; 11])),
            Err(ProtocolError::MessageTooLarge)
        );
    }

    #[test]
    fn message_length_resets_after_fin() {
        let limits = DecoderLimits {
            max_frame: 100,
            max_message: 100,
        };
        let mut dec = Decoder::new(limits);
        for _ in 0..5 {
            let mut a = frame(OpCode::Binary, false, &[0; 60]);
            dec.decode(&mut a).unwrap().unwrap();
            let mut b = frame(OpCode::Continuation, true, &[0; 40]);
            dec.decode(&mut b).unwrap().unwrap();
        }
    }

    #[test]
    fn close_with_invalid_payload() {
        assert_eq!(
            first_error(&frame(OpCode::Close, true, &[0x03])),
            Some(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            first_error(&frame(OpCode::Close, true, &1005u16.to_be_bytes())),
            Some(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            first_error(&frame(OpCode::Close, true, &[0x03, 0xE8, 0xED, 0xA0, 0x80])),
            Some(ProtocolError::InvalidUtf8)
        );
        let (frames, _) = decode_all(&frame(OpCode::Close, true, &4000u16.to_be_bytes()));
        assert_eq!(
            frames,
            vec![Owned::Close(Some((CloseCode(4000).0, String::new())))]
        );
    }

    #[test]
    fn check_order_rsv_before_mask_before_control_rules() {
        // RSV set, unmasked, fragmented ping with 126 bytes: ReservedBits wins.
        assert_eq!(
            first_error(&[0x49, 0x7E, 0, 126]),
            Some(ProtocolError::ReservedBits)
        );
        // Unmasked, fragmented ping: UnmaskedFrame.
        assert_eq!(
            first_error(&[0x09, 0x7E, 0, 126]),
            Some(ProtocolError::UnmaskedFrame)
        );
        // Fragmented ping over 125 bytes: FragmentedControl.
        assert_eq!(
            first_error(&[0x09, 0xFE, 0, 126]),
            Some(ProtocolError::FragmentedControl)
        );
        // Continuation without a message, over max_frame: UnexpectedContinuation.
        let mut dec = Decoder::new(DecoderLimits {
            max_frame: 1,
            max_message: 1,
        });
        assert_eq!(
            dec.decode(&mut [0x80, 0x85]),
            Err(ProtocolError::UnexpectedContinuation)
        );
        // Too large for both limits: FrameTooLarge first.
        let mut dec = Decoder::new(DecoderLimits {
            max_frame: 1,
            max_message: 1,
        });
        assert_eq!(
            dec.decode(&mut [0x82, 0x85]),
            Err(ProtocolError::FrameTooLarge)
        );
    }

    #[test]
    fn frame_len_hint_once_header_known_and_cleared_after() {
        let input = frame(OpCode::Binary, true, &[1; 1000]);
        let mut dec = Decoder::new(DecoderLimits::default());
        assert_eq!(dec.frame_len_hint(), None);
        let mut buf = input[..1].to_vec();
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.frame_len_hint(), None);
        let mut buf = input[..8].to_vec();
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.frame_len_hint(), Some(1008));
        let mut buf = input.clone();
        assert!(dec.decode(&mut buf).unwrap().is_some());
        assert_eq!(dec.frame_len_hint(), None);
    }

    #[test]
    fn partial_progress_is_cleared_when_a_frame_completes() {
        // First frame fed in pieces, second frame (same key phase trap) fed in pieces too.
        let a = frame(OpCode::Binary, true, b"abcdefg");
        let b = frame(OpCode::Binary, true, b"hijklmnop");
        let mut dec = Decoder::new(DecoderLimits::default());
        let mut buf = a[..9].to_vec();
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&a[9..]);
        let (d, used) = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            own(&d),
            Owned::Data(OpCode::Binary, true, b"abcdefg".to_vec())
        );
        assert_eq!(used, a.len());
        let mut buf = b[..8].to_vec();
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&b[8..]);
        let (d, _) = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            own(&d),
            Owned::Data(OpCode::Binary, true, b"hijklmnop".to_vec())
        );
    }

    #[test]
    fn repeated_calls_without_new_bytes_do_not_unmask_twice() {
        let input = frame(OpCode::Text, true, b"hello world");
        let mut dec = Decoder::new(DecoderLimits::default());
        let mut buf = input[..10].to_vec();
        for _ in 0..3 {
            assert_eq!(dec.decode(&mut buf), Ok(None));
        }
        assert_eq!(&buf[6..], b"hell");
        buf.extend_from_slice(&input[10..]);
        let (d, _) = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            own(&d),
            Owned::Data(OpCode::Text, true, b"hello world".to_vec())
        );
    }

    #[test]
    fn shorter_buffer_than_last_call_does_not_panic() {
        // A caller breaking the contract gets garbage, never a panic.
        let input = frame(OpCode::Text, true, &[b'a'; 100]);
        let mut dec = Decoder::new(DecoderLimits::default());
        let mut buf = input[..80].to_vec();
        assert_eq!(dec.decode(&mut buf), Ok(None));
        let mut short = input[..3].to_vec();
        assert_eq!(dec.decode(&mut short), Ok(None));
        let mut other = frame(OpCode::Binary, true, b"xy");
        let _ = dec.decode(&mut other);
    }
}
