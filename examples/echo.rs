//! An echo server on corecast's embedding API, for conformance runs (Autobahn) and as the
//! smallest example of a [`Handler`].
//!
//! `cargo run --release --example echo -- --listen 127.0.0.1:9001 [--driver epoll]
//! [--permessage-deflate]` takes every flag the `corecast` binary takes; with
//! `--permessage-deflate` replies over `--deflate-threshold` go out compressed.

use std::process::ExitCode;

use corecast::{
    proto::CloseCode,
    server::{self, ConnId, Ctx, Handler, Message},
    Config, Server,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sends every message back to the connection it came from.
struct EchoHandler;

impl Handler for EchoHandler {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let queued = match msg {
            Message::Text(text) => ctx.send_text(conn, text),
            Message::Binary(data) => ctx.send_binary(conn, data),
        };
        // A client that sends faster than it reads fills its send buffer: tell it why it goes.
        if queued.is_err() {
            ctx.close(conn, CloseCode::TRY_AGAIN_LATER, "send buffer full");
        }
    }
}

fn main() -> ExitCode {
    // Echo serves the Autobahn testsuite, whose limit cases send 16 MiB messages: start from
    // 16 MiB (the server's built-in default fits the pub/sub protocol, 1 MiB); flags still win.
    let base = Config {
        max_message_bytes: 16 << 20,
        max_frame_bytes: 16 << 20,
        ..Config::default()
    };
    let config = match Config::load_over(base) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::from(2);
        }
    };
    server::logging::init(&config);
    match server::run_until_signalled(Server::builder(config).handler(|_| EchoHandler)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}
