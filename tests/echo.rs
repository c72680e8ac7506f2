//! Echo through a real server under each io driver: text, binary, fragmented messages with an
//! interleaved ping, a 16 MiB message, and ping/pong.

mod common;

use std::io::Write;

use common::*;
use corecast::Config;
use tungstenite::{protocol::WebSocketConfig, Message};

#[test]
fn echoes_text_and_binary() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let mut ws = connect(srv.addr);
        for text in ["hello", "", "ünïcødé ✓ 🚀"] {
            ws.send(Message::text(text)).unwrap();
            match read_data(&mut ws) {
                Message::Text(t) => assert_eq!(t.as_str(), text, "{driver:?}"),
                other => panic!("{driver:?}: text {text:?} echoed as {other:?}"),
            }
        }
        let blobs: [Vec<u8>; 3] = [
            vec![0, 1, 2, 255],
            vec![],
            (0..=255u8).cycle().take(70_000).collect(),
        ];
        for data in blobs {
            ws.send(Message::binary(data.clone())).unwrap();
            match read_data(&mut ws) {
                Message::Binary(b) => assert_eq!(&b[..], &data[..], "{driver:?}"),
                other => panic!(
                    "{driver:?}: binary of {} bytes echoed as {other:?}",
                    data.len()
                ),
            }
        }
        let stats = srv.stats();
        assert_eq!(stats.messages_in, 6, "{driver:?}: {stats:?}");
        assert_eq!(stats.messages_out, 6, "{driver:?}: {stats:?}");
        assert_eq!(stats.opened, 1, "{driver:?}: {stats:?}");
        ws.close(None).unwrap();
    }
}

#[test]
fn many_messages_in_flight_come_back_in_order() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let mut ws = connect(srv.addr);
        for i in 0..500 {
            ws.write(Message::text(format!("message {i}"))).unwrap();
        }
        ws.flush().unwrap();
        for i in 0..500 {
            match read_data(&mut ws) {
                Message::Text(t) => assert_eq!(t.as_str(), format!("message {i}"), "{driver:?}"),
                other => panic!("{driver:?}: got {other:?}"),
            }
        }
    }
}

#[test]
fn fragmented_text_with_interleaved_ping_is_echoed_as_one_message() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let mut s = raw_ws(srv.addr);
        // "fragmented ✓ message" split in 3, the second cut inside the 3-byte '✓'.
        let text = "fragmented ✓ message";
        let bytes = text.as_bytes();
        let cut = text.find('✓').unwrap() + 1;
        let mut wire = client_frame(0x1, false, 0, &bytes[..5]);
        wire.extend(client_frame(0x0, false, 0, &bytes[5..cut]));
        wire.extend(client_frame(0x9, true, 0, b"between fragments"));
        wire.extend(client_frame(0x0, true, 0, &bytes[cut..]));
        s.write_all(&wire).unwrap();

        let pong = read_frame(&mut s).expect("pong");
        assert_eq!(
            pong.opcode, 0xA,
            "{driver:?}: the ping is answered first: {pong:?}"
        );
        assert_eq!(pong.payload, b"between fragments", "{driver:?}");
        // read_frame fails the test on a masked server frame.
        let echo = read_frame(&mut s).expect("echo");
        assert_eq!((echo.opcode, echo.fin), (0x1, true), "{driver:?}: {echo:?}");
        assert_eq!(echo.payload, bytes, "{driver:?}: echoed as one message");
        assert_eq!(srv.stats().messages_in, 1, "{driver:?}");

        // A fragmented binary message, one byte per frame, after it on the same connection.
        let mut wire = client_frame(0x2, false, 0, &[1]);
        wire.extend(client_frame(0x0, false, 0, &[2]));
        wire.extend(client_frame(0x0, true, 0, &[3]));
        s.write_all(&wire).unwrap();
        let echo = read_frame(&mut s).expect("echo");
        assert_eq!((echo.opcode, echo.fin), (0x2, true), "{driver:?}: {echo:?}");
        assert_eq!(echo.payload, [1, 2, 3], "{driver:?}");
        assert_eq!(srv.stats().protocol_errors, 0, "{driver:?}");
    }
}

#[test]
fn sixteen_mib_message_is_echoed() {
    const SIZE: usize = (16 << 20) - 64;
    for driver in drivers() {
        let srv = start_echo(Config {
            max_message_bytes: 16 << 20,
            max_frame_bytes: 16 << 20,
            ..test_config(driver)
        });
        let config = WebSocketConfig::default()
            .max_message_size(Some(32 << 20))
            .max_frame_size(Some(32 << 20));
        let mut ws = connect_with(srv.addr, "/", config);
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(data.clone())).unwrap();
        match read_data(&mut ws) {
            Message::Binary(b) => {
                assert_eq!(b.len(), SIZE, "{driver:?}");
                assert!(b[..] == data[..], "{driver:?}: payload differs");
            }
            other => panic!("{driver:?}: got {:?}", other.len()),
        }
        // Text of the same size, too (validated as UTF-8 on the way in).
        let text: String = "0123456789abcdef".repeat(SIZE / 16);
        ws.send(Message::text(text.clone())).unwrap();
        match read_data(&mut ws) {
            Message::Text(t) => assert!(t.as_str() == text, "{driver:?}: text differs"),
            other => panic!("{driver:?}: got {:?}", other.len()),
        }
        assert_eq!(srv.stats().protocol_errors, 0, "{driver:?}");
    }
}

#[test]
fn ping_is_answered_with_pong_of_same_payload() {
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let mut ws = connect(srv.addr);
        for payload in [&b"are you there?"[..], b"", &[0xAB; 125]] {
            ws.send(Message::Ping(payload.to_vec().into())).unwrap();
            loop {
                match ws_read(&mut ws).unwrap() {
                    Message::Pong(p) => {
                        assert_eq!(&p[..], payload, "{driver:?}");
                        break;
                    }
                    Message::Ping(_) => continue,
                    other => panic!("{driver:?}: expected a pong, got {other:?}"),
                }
            }
        }
        // Pongs are not messages: nothing was delivered to the handler.
        assert_eq!(srv.stats().messages_in, 0, "{driver:?}");
    }
}
