//! The Python `websockets` client (tests/py/client_test.py) against an in-process echo server
//! under each io driver: echo, a fragmented send, ping, close with a code.

mod common;

use std::process::Command;

use common::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/client_test.py");

/// Whether `python3` can import `websockets`; when not, panic under CI and skip elsewhere.
fn python_websockets_available() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import websockets.asyncio.client"])
        .output();
    match probe {
        Ok(out) if out.status.success() => true,
        other => {
            let why = match other {
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    err.trim()
                        .lines()
                        .last()
                        .unwrap_or("import failed")
                        .to_string()
                }
                Err(e) => format!("cannot run python3: {e}"),
            };
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but python3 cannot import websockets: {why}");
            }
            eprintln!(
                "SKIPPED python_client: python3 cannot import websockets ({why}); \
                 run `pip install websockets`"
            );
            false
        }
    }
}

#[test]
fn python_websockets_client_passes_against_echo_server() {
    if !python_websockets_available() {
        return;
    }
    for driver in drivers() {
        let srv = start_echo(test_config(driver));
        let out = Command::new("python3")
            .arg(SCRIPT)
            .arg(srv.url())
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{driver:?}: client_test.py failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains("5 passed, 0 failed"),
            "{driver:?}:\n{stdout}\n{stderr}"
        );
        let stats = srv.stats();
        assert_eq!(stats.protocol_errors, 0, "{driver:?}: {stats:?}");
        assert!(stats.opened >= 5, "{driver:?}: {stats:?}");
    }
}
