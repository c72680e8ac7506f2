//! `peer-tokio-tungstenite`: an echo server on tokio-tungstenite, written the way its own echo
//! example is. Text and binary messages go back as they came; tungstenite answers pings and
//! close frames by itself.

use std::process::ExitCode;

use futures_util::{StreamExt, TryStreamExt};
use tokio_tungstenite::tungstenite::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    corecast_peers::run("peer-tokio-tungstenite", |stream, _peer| async move {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (write, read) = ws.split();
        // `forward` feeds every ready message before one flush, so back-to-back messages share
        // a write. Pings, pongs and closes are dropped here: tungstenite has queued its own
        // replies to them already.
        let _ = read
            .try_filter(|m| std::future::ready(matches!(m, Message::Text(_) | Message::Binary(_))))
            .forward(write)
            .await;
    })
}
