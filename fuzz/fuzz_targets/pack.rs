//! Builds a random datatype tree from the fuzzer's bytes and checks the
//! canonical CPU pack and unpack against a naive walk of the typemap.
//!
//!     cargo install cargo-fuzz && cargo +nightly fuzz run pack
#![no_main]

use libfuzzer_sys::fuzz_target;
use memwall::datatype::{Committed, Datatype, Order, Primitive, StructPadding};

/// Reads small numbers from the fuzzer's bytes; zeros when they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    /// A value in lo..hi.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::from(self.u8()) % (hi - lo)
    }
}

fn build(b: &mut Bytes, depth: u32) -> Option<Datatype> {
    let leaf = |b: &mut Bytes| match b.u8() % 4 {
        0 => Datatype::byte(),
        1 => Datatype::named(Primitive::I32),
        2 => Datatype::named(Primitive::F64),
        _ => Datatype::named(Primitive::Other { size: 3, align: 1 }),
    };
    if depth == 0 {
        return Some(leaf(b));
    }
    let op = b.u8() % 10;
    if op == 0 {
        return Some(leaf(b));
    }
    let child = build(b, depth - 1)?;
    let r = match op {
        1 => child.contiguous(b.range(0, 4)),
        2 => child.vector(b.range(1, 4), b.range(0, 3), b.range(-4, 6)),
        3 => child.hvector(b.range(1, 4), b.range(0, 3), b.range(-40, 40)),
        4 => {
            let n = b.range(1, 4) as usize;
            let bl: Vec<i64> = (0..n).map(|_| b.range(0, 3)).collect();
            let d: Vec<i64> = (0..n).map(|_| b.range(0, 10)).collect();
            child.indexed(&bl, &d)
        }
        5 => {
            let n = b.range(1, 4) as usize;
            let bl: Vec<i64> = (0..n).map(|_| b.range(0, 3)).collect();
            let d: Vec<i64> = (0..n).map(|_| b.range(-30, 30)).collect();
            child.hindexed(&bl, &d)
        }
        6 => {
            let d: Vec<i64> = (0..b.range(1, 4)).map(|_| b.range(0, 8)).collect();
            child.indexed_block(b.range(0, 3), &d)
        }
        7 => {
            let other = build(b, depth - 1)?;
            let (l1, l2) = (b.range(0, 3), b.range(0, 3));
            let (d1, d2) = (b.range(0, 40), b.range(0, 40));
            Datatype::structure(&[l1, l2], &[d1, d2], &[child, other], StructPadding::None)
        }
        8 => {
            let n = b.range(1, 4) as usize;
            let sizes: Vec<i64> = (0..n).map(|_| b.range(1, 5)).collect();
            let subs: Vec<i64> = sizes.iter().map(|&s| b.range(0, s + 1)).collect();
            let starts: Vec<i64> = sizes.iter().zip(&subs).map(|(&s, &u)| b.range(0, s - u + 1)).collect();
            let order = if b.u8() % 2 == 0 { Order::C } else { Order::Fortran };
            child.subarray(&sizes, &subs, &starts, order)
        }
        _ => {
            let (lb, grow) = (b.range(-8, 8), b.range(0, 24));
            child.resized(child.lb() + lb, child.extent() + grow)
        }
    };
    r.ok()
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let Some(t) = build(&mut b, 4) else { return };
    let count = b.range(1, 4);
    let Ok(c) = Committed::new(&t) else { return };
    let (lo, hi) = c.layout_for(count).unwrap().span();
    let origin = (-lo).max(0) as usize;
    let src: Vec<u8> = (0..(origin as i128 + hi).max(0) as usize).map(|i| (i * 7 + 3) as u8).collect();

    let mut want = Vec::new();
    for e in 0..count {
        for (d, n) in t.typemap() {
            let s = (origin as i64 + e * t.extent() + d) as usize;
            want.extend_from_slice(&src[s..s + n as usize]);
        }
    }
    let mut got = vec![0u8; c.pack_size(count).unwrap()];
    let mut pos = 0;
    c.pack(&src, origin, count, &mut got, &mut pos).unwrap();
    assert_eq!(got, want, "pack of {t:?}");
});
