//! Memory of permessage-deflate, measured with a counting allocator: what a connection that
//! keeps its context pays for its inflater (per window size), and what a worker pays for its
//! shared compressor and inflater. The figures are printed (`--nocapture`) and documented in
//! docs/protocol.md; the assertions are generous upper bounds.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering::Relaxed},
};

use corecast::proto::deflate::{Deflater, Inflater};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Live heap bytes held by what `make` returns (after it has done its first work).
fn held<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = LIVE.load(Relaxed);
    let t = make();
    (t, LIVE.load(Relaxed) - before)
}

#[test]
fn deflate_memory_per_connection_and_per_worker() {
    let msg: Vec<u8> = (0..100_000u32)
        .flat_map(|i| format!("{} ", i % 977).into_bytes())
        .collect();
    let mut z = Vec::new();
    Deflater::new(6, 15).compress(&msg, &mut z).unwrap();

    for bits in [9u8, 12, 15] {
        let (inf, fresh) = held(|| Box::new(Inflater::new(bits)));
        let (z, n) = (&z, msg.len());
        let (mut inf, used) = held(move || {
            let mut inf = inf;
            let mut out = Vec::with_capacity(n);
            inf.inflate(z, usize::MAX, false, &mut out).unwrap();
            drop(out);
            inf
        });
        let total = fresh + used;
        println!(
            "inflater, {bits}-bit window: {fresh} B when made, {total} B after the first message"
        );
        assert!(total <= 64 * 1024, "{bits}: {total}");
        let _ = inf.inflate(&[0x00], 10, true, &mut Vec::new());
    }
    for level in [1u32, 6, 9] {
        let (d, fresh) = held(|| Box::new(Deflater::new(level, 15)));
        println!("compressor, level {level}, 15-bit window: {fresh} B");
        assert!(fresh <= 512 * 1024, "{fresh}");
        drop(d);
    }
    let (d, fresh) = held(|| Box::new(Deflater::new(6, 9)));
    println!("compressor, level 6, 9-bit window: {fresh} B");
    drop(d);
}
