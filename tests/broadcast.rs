//! One encoded frame shared by many connections: `proto::encode_frame_bytes` + `Ctx::send_frame`.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use corecast::{
    proto::{encode_frame_bytes, OpCode},
    server::{ConnId, Ctx, Handler, Message, OpenInfo, Server},
};
use tungstenite::Message as WsMessage;

/// Sends every text message to every connection of its worker, encoded once.
#[derive(Default)]
struct Broadcast {
    conns: HashMap<ConnId, ()>,
}

impl Handler for Broadcast {
    fn on_open(&mut self, _: &mut Ctx<'_>, conn: ConnId, _: &OpenInfo<'_>) {
        self.conns.insert(conn, ());
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, _from: ConnId, msg: Message<'_>) {
        let Message::Text(text) = msg else { return };
        let frame: Bytes = encode_frame_bytes(OpCode::Text, text.as_bytes());
        for &conn in self.conns.keys() {
            // A refcount per connection, not a copy of the frame.
            ctx.send_frame(conn, frame.clone()).expect("queued");
        }
    }

    fn on_close(&mut self, _: &mut Ctx<'_>, conn: ConnId, _: Option<corecast::proto::CloseCode>) {
        self.conns.remove(&conn);
    }
}

#[test]
fn one_encoded_frame_reaches_every_connection_of_the_worker() {
    for driver in drivers() {
        let mut config = test_config(driver);
        config.workers = 1; // every connection on the same worker, so all share one frame
        let server = Server::builder(config)
            .handler(|_| Broadcast::default())
            .start()
            .unwrap();
        let addr = server.local_addr();
        let mut clients: Vec<_> = (0..20).map(|_| connect(addr)).collect();
        assert!(
            wait_until(std::time::Duration::from_secs(5), || server.stats().opened
                == 20),
            "[{driver:?}] all 20 opened"
        );
        clients[0].send(WsMessage::text("tick 1")).unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(
                read_data(c),
                WsMessage::text("tick 1"),
                "[{driver:?}] client {i}"
            );
        }
        assert_eq!(
            server.stats().messages_out,
            20,
            "[{driver:?}] one frame queued per client"
        );
        drop(clients);
        server.drain(std::time::Duration::ZERO);
        server.join().unwrap();
    }
}
