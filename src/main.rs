//! The `corecast` binary: the pub/sub server. Load the configuration, set up logging, start
//! the workers and the admin API, serve until a signal.

use std::process::ExitCode;

use corecast::{
    admin::{Admin, AdminState},
    pubsub::PubSubService,
    server::{self, ServerError},
    Config, Server,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corecast: {e}");
            return ExitCode::from(2);
        }
    };
    server::logging::init(&config);
    server::limits::log_memlock();
    PubSubService::configure(&mut config);
    let pubsub = PubSubService::new(&config);
    let admin_addr = config.admin_listen;
    let max_body = config.max_message_bytes;
    let builder = pubsub.install(Server::builder(config));
    let result = server::run_until_signalled_with(builder, |srv| {
        Admin::start(
            admin_addr,
            AdminState {
                pubsub: pubsub.clone(),
                server: srv.shutdown_handle(),
                driver: srv.driver(),
                max_body,
            },
        )
        .map_err(|source| ServerError::Admin {
            addr: admin_addr,
            source,
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "corecast failed");
            eprintln!("corecast: {e}");
            ExitCode::FAILURE
        }
    }
}
