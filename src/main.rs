//! The `corecast` binary: load the configuration, set up logging, serve until a signal.

use std::process::ExitCode;

use corecast::{
    proto::CloseCode,
    server::{self, ConnId, Ctx, Handler, Message},
    Config, Server,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The built-in application until the pub/sub layer lands: echo every message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let sent = match msg {
            Message::Text(t) => ctx.send_text(conn, t),
            Message::Binary(b) => ctx.send_binary(conn, b),
        };
        if sent.is_err() {
            ctx.close(conn, CloseCode::TRY_AGAIN_LATER, "send buffer full");
        }
    }
}

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corecast: {e}");
            return ExitCode::from(2);
        }
    };
    server::logging::init(&config);
    server::limits::log_memlock();
    let builder = Server::builder(config).handler(|_| Echo);
    match server::run_until_signalled(builder) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "corecast failed");
            eprintln!("corecast: {e}");
            ExitCode::FAILURE
        }
    }
}
