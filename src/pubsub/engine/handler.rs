//! The engine as the server's [`Handler`]: each callback reads the clock once and hands the
//! time to the [`Engine`], with the worker's [`Ctx`] as its [`Outbox`](super::Outbox).

use std::{future::Future, pin::Pin, rc::Rc, sync::Arc};

use super::{Engine, Item, Settings, Time};
use crate::{
    fanout::{Inbox, Outboxes},
    proto::CloseCode,
    pubsub::stats::WorkerPubSubStats,
    server::{ConnId, ConnRef, Ctx, Handler, Message, OpenInfo, Wakeup},
};

/// The pub/sub [`Handler`] of one worker.
pub struct PubSub {
    engine: Engine<ConnRef>,
    inbox: Rc<InboxWake>,
}

/// The worker's inbox as a [`Wakeup`] source.
struct InboxWake(Rc<Inbox<Item>>);

impl Wakeup for InboxWake {
    fn wait(self: Rc<Self>) -> Pin<Box<dyn Future<Output = bool>>> {
        // `ready` resolves when items wait or every producer has gone; checked on this
        // thread right after, an empty inbox means the latter.
        Box::pin(async move {
            self.0.ready().await;
            !self.0.is_empty()
        })
    }
}

impl PubSub {
    /// The handler of worker `me` of `workers`.
    pub(crate) fn new(
        me: usize,
        workers: usize,
        set: Arc<Settings>,
        inbox: Inbox<Item>,
        mesh: Outboxes<Item>,
        stats: Arc<WorkerPubSubStats>,
    ) -> Self {
        let inbox = Rc::new(inbox);
        PubSub {
            engine: Engine::new(me, workers, set, inbox.clone(), mesh, stats),
            inbox: Rc::new(InboxWake(inbox)),
        }
    }
}

impl Handler for PubSub {
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, info: &OpenInfo<'_>) {
        self.engine.on_open(ctx, conn, info);
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        self.engine.on_message(ctx, Time::now(), conn, msg);
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _code: Option<CloseCode>) {
        self.engine.on_close(conn);
    }

    fn wakeup(&mut self) -> Option<Rc<dyn Wakeup>> {
        Some(self.inbox.clone())
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        self.engine.on_wake(ctx, Time::now);
    }

    fn after_flush(&mut self, _ctx: &mut Ctx<'_>) {
        if self.engine.has_written() {
            self.engine.record_latency(Time::now());
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        self.engine.on_tick(ctx, Time::now());
    }
}
