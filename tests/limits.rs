//! The process-wide connection limit: counted across workers, refused beyond it, freed on close.

mod common;

use std::{io::Read, net::TcpStream, time::Duration};

use common::*;

/// A raw connection the server refused: it answers 503 before the upgrade and closes.
fn refused(addr: std::net::SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = std::io::Write::write_all(&mut s, upgrade_request(addr, "/", "").as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 503")
}

#[test]
fn the_limit_holds_across_workers_and_frees_on_close() {
    for driver in drivers() {
        let mut config = test_config(driver);
        config.workers = 2;
        config.max_connections = 4;
        let srv = start_echo(config);
        // Whichever workers the kernel picks, exactly four fit.
        let mut open: Vec<_> = (0..4).map(|_| connect(srv.addr)).collect();
        assert!(
            refused(srv.addr),
            "[{driver:?}] a fifth connection is refused"
        );
        assert!(
            wait_until(Duration::from_secs(3), || srv.stats().refused_limit == 1),
            "[{driver:?}] refusal counted: {:?}",
            srv.stats()
        );
        // Closing one frees its slot for a new connection.
        let mut first = open.remove(0);
        first.close(None).unwrap();
        assert!(finishes_closed(&mut first), "[{driver:?}] close completes");
        assert!(
            wait_until(Duration::from_secs(3), || srv.stats().connections == 3),
            "[{driver:?}] slot released: {:?}",
            srv.stats()
        );
        open.push(connect(srv.addr));
        // The server counts the open just after writing the 101, so the client may see the
        // 101 first.
        assert!(
            wait_until(Duration::from_secs(3), || srv.stats().opened == 5),
            "[{driver:?}] {:?}",
            srv.stats()
        );
        drop(open);
    }
}
