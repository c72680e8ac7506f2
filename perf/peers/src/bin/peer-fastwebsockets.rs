//! `peer-fastwebsockets`: an echo server on fastwebsockets, upgraded through hyper 1 the way its
//! own echo example is. Auto-close and auto-pong are on (the defaults); fragmented messages are
//! reassembled by `FragmentCollector` and echoed whole.

use std::process::ExitCode;

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Echoes data frames until the peer closes or the connection fails.
async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// Answers the HTTP upgrade request and starts the echo task on the upgraded connection.
async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

fn main() -> ExitCode {
    corecast_peers::run("peer-fastwebsockets", |stream, _peer| async move {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service_fn(upgrade_request))
            .with_upgrades()
            .await;
    })
}
