//! Logging setup: human-readable lines by default, one JSON object per line on request.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Install the global tracing subscriber (stderr) for `cfg.log_format` and `cfg.log_filter`.
/// Does nothing if one is installed already.
pub fn init(cfg: &Config) {
    let filter = EnvFilter::try_new(&cfg.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
