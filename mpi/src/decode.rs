//! Reads a committed MPI datatype into memwall's datatype engine through
//! `MPI_Type_get_envelope` / `MPI_Type_get_contents`, recursively.
//!
//! The MPI side is behind [`TypeSource`] (the real one calls the library
//! through the C shim; tests use a fake), so this file knows no MPI ABI.
//! Every node is checked against the library's own size, lb, extent,
//! true_lb and true_extent: anything that does not match exactly is
//! [`Unsupported`] and the type is left to the library. A struct whose extent
//! the library padded (MPICH's alignment rule) is resized to the library's
//! bounds, which is exactly what the library's typemap is.

use memwall::datatype::{Datatype, Order, Primitive, StructPadding};

/// A type constructor, as `MPI_Type_get_envelope` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combiner {
    /// A predefined type.
    Named,
    /// `MPI_Type_dup`.
    Dup,
    /// `MPI_Type_contiguous`.
    Contiguous,
    /// `MPI_Type_vector`.
    Vector,
    /// `MPI_Type_create_hvector`.
    Hvector,
    /// `MPI_Type_indexed`.
    Indexed,
    /// `MPI_Type_create_hindexed`.
    Hindexed,
    /// `MPI_Type_create_indexed_block`.
    IndexedBlock,
    /// `MPI_Type_create_hindexed_block`.
    HindexedBlock,
    /// `MPI_Type_create_struct`.
    Struct,
    /// `MPI_Type_create_subarray`.
    Subarray,
    /// `MPI_Type_create_resized`.
    Resized,
    /// Anything else (darray, f90 types, ...): the library keeps it.
    Other(i32),
}

/// `MPI_Type_get_envelope`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// Number of integers in the contents.
    pub integers: usize,
    /// Number of addresses.
    pub addresses: usize,
    /// Number of datatypes.
    pub datatypes: usize,
    /// The constructor.
    pub combiner: Combiner,
}

/// `MPI_Type_get_contents`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// The integers.
    pub ints: Vec<i64>,
    /// The addresses (`MPI_Aint`).
    pub addrs: Vec<i64>,
    /// The datatype handles, which the caller frees when derived.
    pub types: Vec<u64>,
}

/// What the library says about a type's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `MPI_Type_size`.
    pub size: i64,
    /// `MPI_Type_get_extent` lb.
    pub lb: i64,
    /// `MPI_Type_get_extent` extent.
    pub extent: i64,
    /// `MPI_Type_get_true_extent` lb.
    pub true_lb: i64,
    /// `MPI_Type_get_true_extent` extent.
    pub true_extent: i64,
}

impl Bounds {
    /// The bounds memwall computed for `t`.
    pub fn of(t: &Datatype) -> Self {
        Bounds { size: t.size(), lb: t.lb(), extent: t.extent(), true_lb: t.true_lb(), true_extent: t.true_extent() }
    }
}

/// Why a type stays with the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The library's view of datatypes, by handle (as u64).
pub trait TypeSource {
    /// `MPI_Type_get_envelope`.
    fn envelope(&self, t: u64) -> Result<Envelope, Unsupported>;
    /// `MPI_Type_get_contents` with the envelope's counts.
    fn contents(&self, t: u64, env: &Envelope) -> Result<Contents, Unsupported>;
    /// Size and bounds.
    fn bounds(&self, t: u64) -> Result<Bounds, Unsupported>;
    /// `MPI_Type_free` of a derived type `get_contents` returned.
    fn free(&self, t: u64);
    /// The subarray order an `MPI_ORDER_*` value stands for.
    fn order(&self, value: i64) -> Option<Order>;
}

/// Deepest type nesting followed (deeper types stay with the library).
pub const MAX_DEPTH: usize = 64;

/// Decodes handle `t` into a memwall datatype with the library's exact bounds.
pub fn decode(src: &dyn TypeSource, t: u64) -> Result<Datatype, Unsupported> {
    decode_at(src, t, 0)
}

fn decode_at(src: &dyn TypeSource, t: u64, depth: usize) -> Result<Datatype, Unsupported> {
    if depth > MAX_DEPTH {
        return Err(Unsupported(format!("nested deeper than {MAX_DEPTH}")));
    }
    let env = src.envelope(t)?;
    let lib = src.bounds(t)?;
    let ty = match env.combiner {
        Combiner::Named => named(&lib)?,
        Combiner::Other(c) => return Err(Unsupported(format!("combiner {c}"))),
        comb => {
            let c = src.contents(t, &env)?;
            let built = build(src, comb, &c, depth);
            for &child in &c.types {
                if src.envelope(child).is_ok_and(|e| e.combiner != Combiner::Named) {
                    src.free(child);
                }
            }
            built?
        }
    };
    check(ty, &lib, env.combiner)
}

/// A named type: contiguous data of `size` bytes from 0 (pair types such as
/// `MPI_DOUBLE_INT` keep the library's extent); gapped ones are unsupported.
fn named(lib: &Bounds) -> Result<Datatype, Unsupported> {
    if lib.size <= 0 || lib.true_lb != 0 || lib.true_extent != lib.size {
        return Err(Unsupported(format!("named type with gaps or no data ({lib:?})")));
    }
    let size = u32::try_from(lib.size).map_err(|_| Unsupported(format!("named type of {} bytes", lib.size)))?;
    let p = match size {
        1 => Primitive::Byte,
        2 => Primitive::I16,
        4 => Primitive::I32,
        8 => Primitive::I64,
        16 => Primitive::C64,
        s => Primitive::Other { size: s, align: 1 << s.trailing_zeros().min(4) },
    };
    let t = Datatype::named(p);
    if lib.lb == 0 && lib.extent == lib.size {
        return Ok(t);
    }
    t.resized(lib.lb, lib.extent).map_err(engine)
}

fn engine(e: memwall::Error) -> Unsupported {
    Unsupported(format!("datatype engine: {e}"))
}

/// `v[range]`, or an error naming what was short.
fn take<'a>(v: &'a [i64], from: usize, n: usize, what: &str) -> Result<&'a [i64], Unsupported> {
    v.get(from..from.checked_add(n).ok_or_else(|| Unsupported(format!("{what}: count overflows")))?)
        .ok_or_else(|| Unsupported(format!("{what}: contents hold {} values, need {}", v.len(), from + n)))
}

fn count_of(ints: &[i64]) -> Result<usize, Unsupported> {
    let n = *ints.first().ok_or_else(|| Unsupported("contents without a count".into()))?;
    usize::try_from(n).map_err(|_| Unsupported(format!("negative count {n}")))
}

fn build(src: &dyn TypeSource, comb: Combiner, c: &Contents, depth: usize) -> Result<Datatype, Unsupported> {
    let (ints, addrs) = (&c.ints[..], &c.addrs[..]);
    let child = |i: usize| -> Result<Datatype, Unsupported> {
        let h = *c.types.get(i).ok_or_else(|| Unsupported(format!("contents lack datatype {i}")))?;
        decode_at(src, h, depth + 1)
    };
    let t = match comb {
        Combiner::Dup => child(0)?.dup(),
        Combiner::Contiguous => child(0)?.contiguous(take(ints, 0, 1, "contiguous")?[0]).map_err(engine)?,
        Combiner::Vector => {
            let v = take(ints, 0, 3, "vector")?;
            child(0)?.vector(v[0], v[1], v[2]).map_err(engine)?
        }
        Combiner::Hvector => {
            let v = take(ints, 0, 2, "hvector")?;
            child(0)?.hvector(v[0], v[1], take(addrs, 0, 1, "hvector stride")?[0]).map_err(engine)?
        }
        Combiner::Indexed => {
            let n = count_of(ints)?;
            child(0)?.indexed(take(ints, 1, n, "indexed")?, take(ints, 1 + n, n, "indexed")?).map_err(engine)?
        }
        Combiner::Hindexed => {
            let n = count_of(ints)?;
            child(0)?.hindexed(take(ints, 1, n, "hindexed")?, take(addrs, 0, n, "hindexed")?).map_err(engine)?
        }
        Combiner::IndexedBlock => {
            let n = count_of(ints)?;
            let bl = take(ints, 1, 1, "indexed_block")?[0];
            child(0)?.indexed_block(bl, take(ints, 2, n, "indexed_block")?).map_err(engine)?
        }
        Combiner::HindexedBlock => {
            let n = count_of(ints)?;
            let bl = take(ints, 1, 1, "hindexed_block")?[0];
            child(0)?.hindexed_block(bl, take(addrs, 0, n, "hindexed_block")?).map_err(engine)?
        }
        Combiner::Struct => {
            let n = count_of(ints)?;
            let types = (0..n).map(child).collect::<Result<Vec<_>, _>>()?;
            Datatype::structure(take(ints, 1, n, "struct")?, take(addrs, 0, n, "struct")?, &types, StructPadding::None)
                .map_err(engine)?
        }
        Combiner::Subarray => {
            let n = count_of(ints)?;
            let o = take(ints, 1 + 3 * n, 1, "subarray order")?[0];
            let order = src.order(o).ok_or_else(|| Unsupported(format!("subarray order {o}")))?;
            let (sizes, subs, starts) = (
                take(ints, 1, n, "subarray")?,
                take(ints, 1 + n, n, "subarray")?,
                take(ints, 1 + 2 * n, n, "subarray")?,
            );
            child(0)?.subarray(sizes, subs, starts, order).map_err(engine)?
        }
        Combiner::Resized => {
            let a = take(addrs, 0, 2, "resized")?;
            child(0)?.resized(a[0], a[1]).map_err(engine)?
        }
        Combiner::Named | Combiner::Other(_) => unreachable!("handled by decode_at"),
    };
    Ok(t)
}

/// Compares memwall's bounds with the library's. Only a struct may differ, in
/// lb/extent alone (padding), and is then resized to the library's bounds.
fn check(ty: Datatype, lib: &Bounds, comb: Combiner) -> Result<Datatype, Unsupported> {
    let ours = Bounds::of(&ty);
    if ours == *lib {
        return Ok(ty);
    }
    let data_same = ours.size == lib.size && ours.true_lb == lib.true_lb && ours.true_extent == lib.true_extent;
    if data_same && comb == Combiner::Struct {
        return ty.resized(lib.lb, lib.extent).map_err(engine);
    }
    Err(Unsupported(format!("{comb:?}: memwall computes {ours:?}, the library {lib:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A fake library: handles to (envelope, contents, bounds), built from
    /// memwall's own constructors so its bounds are right by construction.
    #[derive(Default)]
    struct Fake {
        types: HashMap<u64, (Combiner, Contents, Bounds)>,
        freed: RefCell<Vec<u64>>,
        next: u64,
    }

    impl Fake {
        fn named(&mut self, size: i64) -> u64 {
            let b = Bounds { size, lb: 0, extent: size, true_lb: 0, true_extent: size };
            self.add(Combiner::Named, Contents::default(), b)
        }
        fn add(&mut self, comb: Combiner, c: Contents, b: Bounds) -> u64 {
            self.next += 1;
            self.types.insert(self.next, (comb, c, b));
            self.next
        }
        fn derived(&mut self, comb: Combiner, ints: &[i64], addrs: &[i64], types: &[u64], like: &Datatype) -> u64 {
            let c = Contents { ints: ints.to_vec(), addrs: addrs.to_vec(), types: types.to_vec() };
            self.add(comb, c, Bounds::of(like))
        }
    }

    impl TypeSource for Fake {
        fn envelope(&self, t: u64) -> Result<Envelope, Unsupported> {
            let (comb, c, _) = self.types.get(&t).ok_or_else(|| Unsupported(format!("no type {t}")))?;
            Ok(Envelope { integers: c.ints.len(), addresses: c.addrs.len(), datatypes: c.types.len(), combiner: *comb })
        }
        fn contents(&self, t: u64, _: &Envelope) -> Result<Contents, Unsupported> {
            Ok(self.types[&t].1.clone())
        }
        fn bounds(&self, t: u64) -> Result<Bounds, Unsupported> {
            Ok(self.types[&t].2)
        }
        fn free(&self, t: u64) {
            self.freed.borrow_mut().push(t);
        }
        fn order(&self, value: i64) -> Option<Order> {
            [(0, Order::C), (1, Order::Fortran)].into_iter().find(|&(v, _)| v == value).map(|(_, o)| o)
        }
    }

    fn f64t() -> Datatype {
        Datatype::named(Primitive::F64)
    }

    #[test]
    fn vector_of_doubles_matches_and_frees_nothing_named() {
        let mut f = Fake::default();
        let d = f.named(8);
        let like = f64t().vector(4, 2, 3).unwrap();
        let v = f.derived(Combiner::Vector, &[4, 2, 3], &[], &[d], &like);
        let t = decode(&f, v).unwrap();
        assert_eq!(t.typemap(), like.typemap());
        assert!(f.freed.borrow().is_empty());
    }

    #[test]
    fn nested_types_free_returned_derived_children() {
        let mut f = Fake::default();
        let d = f.named(8);
        let row = f64t().contiguous(3).unwrap();
        let r = f.derived(Combiner::Contiguous, &[3], &[], &[d], &row);
        let sub = row.subarray(&[5, 6], &[2, 3], &[1, 2], Order::Fortran).unwrap();
        let s = f.derived(Combiner::Subarray, &[2, 5, 6, 2, 3, 1, 2, 1], &[], &[r], &sub);
        let res = sub.resized(-8, 1000).unwrap();
        let rs = f.derived(Combiner::Resized, &[], &[-8, 1000], &[s], &res);
        let t = decode(&f, rs).unwrap();
        assert_eq!(t.typemap(), res.typemap());
        assert_eq!((t.lb(), t.extent()), (-8, 1000));
        let mut freed = f.freed.borrow().clone();
        freed.sort();
        assert_eq!(freed, vec![r, s]);
    }

    #[test]
    fn every_combiner_round_trips() {
        let mut f = Fake::default();
        let i = f.named(4);
        let it = Datatype::named(Primitive::I32);
        let cases: Vec<(Combiner, Vec<i64>, Vec<i64>, Datatype)> = vec![
            (Combiner::Dup, vec![], vec![], it.dup()),
            (Combiner::Hvector, vec![3, 2], vec![20], it.hvector(3, 2, 20).unwrap()),
            (Combiner::Indexed, vec![2, 1, 3, 0, 5], vec![], it.indexed(&[1, 3], &[0, 5]).unwrap()),
            (Combiner::Hindexed, vec![2, 2, 1], vec![40, 0], it.hindexed(&[2, 1], &[40, 0]).unwrap()),
            (Combiner::IndexedBlock, vec![3, 2, 0, 4, 9], vec![], it.indexed_block(2, &[0, 4, 9]).unwrap()),
            (Combiner::HindexedBlock, vec![2, 3], vec![0, 100], it.hindexed_block(3, &[0, 100]).unwrap()),
        ];
        for (comb, ints, addrs, like) in cases {
            let h = f.derived(comb, &ints, &addrs, &[i], &like);
            assert_eq!(decode(&f, h).unwrap().typemap(), like.typemap(), "{comb:?}");
        }
    }

    #[test]
    fn struct_takes_the_library_padding() {
        let mut f = Fake::default();
        let (d, c) = (f.named(8), f.named(1));
        let plain = Datatype::structure(&[1, 1], &[0, 8], &[f64t(), Datatype::byte()], StructPadding::None).unwrap();
        let padded =
            Datatype::structure(&[1, 1], &[0, 8], &[f64t(), Datatype::byte()], StructPadding::Natural).unwrap();
        let s = f.derived(Combiner::Struct, &[2, 1, 1], &[0, 8], &[d, c], &padded);
        let t = decode(&f, s).unwrap();
        assert_eq!(t.extent(), 16);
        assert_eq!(t.typemap(), plain.typemap());
    }

    #[test]
    fn mismatches_and_unknowns_are_unsupported() {
        let mut f = Fake::default();
        let d = f.named(8);
        // A vector whose library bounds disagree with memwall's.
        let wrong = f64t().vector(2, 1, 5).unwrap();
        let v = f.derived(Combiner::Vector, &[2, 1, 3], &[], &[d], &wrong);
        assert!(decode(&f, v).unwrap_err().0.contains("Vector"));
        let darray = f.add(Combiner::Other(13), Contents::default(), Bounds::of(&f64t()));
        assert!(decode(&f, darray).is_err());
        let short = f.derived(Combiner::Indexed, &[3, 1], &[], &[d], &f64t());
        assert!(decode(&f, short).unwrap_err().0.contains("indexed"));
        let neg = f.derived(Combiner::Indexed, &[-1], &[], &[d], &f64t());
        assert!(decode(&f, neg).is_err());
        let gap = f.add(
            Combiner::Named,
            Contents::default(),
            Bounds { size: 6, lb: 0, extent: 8, true_lb: 0, true_extent: 8 },
        );
        assert!(decode(&f, gap).is_err());
    }

    #[test]
    fn pair_named_types_keep_their_extent() {
        let mut f = Fake::default();
        let di = f.add(
            Combiner::Named,
            Contents::default(),
            Bounds { size: 12, lb: 0, extent: 16, true_lb: 0, true_extent: 12 },
        );
        let t = decode(&f, di).unwrap();
        assert_eq!((t.size(), t.extent()), (12, 16));
    }

    #[test]
    fn too_deep_is_unsupported() {
        let mut f = Fake::default();
        let mut h = f.named(1);
        let mut like = Datatype::byte();
        for _ in 0..(MAX_DEPTH + 2) {
            like = like.dup();
            h = f.derived(Combiner::Dup, &[], &[], &[h], &like);
        }
        assert!(decode(&f, h).unwrap_err().0.contains("deeper"));
    }
}
