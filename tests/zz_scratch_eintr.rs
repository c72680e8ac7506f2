mod common;
use common::*;
use std::{io::Read, time::{Duration, Instant}};

#[test]
fn scratch() {
    let mode = std::env::var("MODE").unwrap_or_default();
    let mut srv = start_echo(test_config(corecast::Driver::Uring));
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = if mode == "server" {
        raw_ws(srv.addr)
    } else {
        std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap()
    };
    let _accepted = other.accept();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let server = srv.server.take().unwrap();
    let h = server.shutdown_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        h.drain(Duration::from_secs(1));
    });
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let r = s.read(&mut buf);
    eprintln!("MODE={mode}: {:?} after {:?}", r.map_err(|e| e.kind()), start.elapsed());
    t.join().unwrap();
    drop(server);
}
