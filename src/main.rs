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
    let admin_token = match read_admin_token(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("corecast: {e}");
            return ExitCode::from(2);
        }
    };
    if admin_token.is_none() && !config.admin_listen.ip().is_loopback() {
        tracing::warn!(
            addr = %config.admin_listen,
            "the admin API listens beyond loopback without a token: anyone who reaches it can \
             publish; set admin_token_file"
        );
    }
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
                token: admin_token,
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

/// The admin token from `admin_token_file`, trimmed; an unreadable or empty file is an error.
fn read_admin_token(config: &Config) -> Result<Option<String>, String> {
    let Some(path) = &config.admin_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("admin_token_file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("admin_token_file {} is empty", path.display()));
    }
    Ok(Some(token.to_string()))
}
