//! Datatypes as MPI builds them: named primitives and the derived-type
//! constructors, with size, lb, extent, true_lb and true_extent exactly as
//! MPI defines them.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A named (predefined) datatype: its size and, for struct padding, alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    /// `MPI_BYTE` / `MPI_PACKED`: one byte.
    Byte,
    /// `MPI_CHAR`, `MPI_INT8_T`, `MPI_UINT8_T`.
    I8,
    /// `MPI_SHORT`, `MPI_INT16_T`, `MPI_UINT16_T`, and 16-bit floats.
    I16,
    /// `MPI_INT`, `MPI_INT32_T`, `MPI_UINT32_T`.
    I32,
    /// `MPI_LONG`, `MPI_LONG_LONG`, `MPI_INT64_T`, `MPI_UINT64_T`.
    I64,
    /// `MPI_FLOAT`.
    F32,
    /// `MPI_DOUBLE`.
    F64,
    /// `MPI_C_FLOAT_COMPLEX`: two f32.
    C32,
    /// `MPI_C_DOUBLE_COMPLEX`: two f64.
    C64,
    /// A named type of any size and alignment (e.g. `MPI_LONG_DOUBLE`).
    Other {
        /// Size in bytes.
        size: u32,
        /// Alignment in bytes.
        align: u32,
    },
}

impl Primitive {
    /// Size in bytes.
    pub fn size(self) -> i64 {
        match self {
            Primitive::Byte | Primitive::I8 => 1,
            Primitive::I16 => 2,
            Primitive::I32 | Primitive::F32 => 4,
            Primitive::I64 | Primitive::F64 | Primitive::C32 => 8,
            Primitive::C64 => 16,
            Primitive::Other { size, .. } => i64::from(size),
        }
    }

    /// Natural alignment in bytes.
    pub fn align(self) -> i64 {
        match self {
            Primitive::C32 => 4,
            Primitive::C64 => 8,
            Primitive::Other { align, .. } => i64::from(align.max(1)),
            p => p.size(),
        }
    }
}

/// Row-major (C) or column-major (Fortran) order of a subarray.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// `MPI_ORDER_C`: the last index varies fastest.
    C,
    /// `MPI_ORDER_FORTRAN`: the first index varies fastest.
    Fortran,
}

/// How a struct's extent is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StructPadding {
    /// No padding: the extent spans the members' bounds (Open MPI).
    None,
    /// Round the extent up to the largest member alignment (MPICH's default).
    Natural,
}

/// The tree a datatype was built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    Named(Primitive),
    /// Blocks of `blocklen` copies of `child`, block `i` at byte displacement `displs[i]`.
    /// Every regular constructor is one of these with computed displacements;
    /// `shape` keeps the regular structure for canonicalization.
    Blocks {
        child: Datatype,
        blocks: Vec<(i64, i64)>,
        shape: Shape,
    },
    /// Struct: block `i` is `blocklens[i]` copies of `children[i]` at `displs[i]`.
    Struct {
        members: Vec<(i64, i64, Datatype)>,
    },
    Resized {
        child: Datatype,
        lb: i64,
        extent: i64,
    },
}

/// The regular structure behind a [`Node::Blocks`], when there is one:
/// `dims` (count, byte stride) outer to inner, then `blocklen` copies of the
/// child, starting at byte `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    Regular { offset: i64, dims: Vec<(i64, i64)>, blocklen: i64 },
    Irregular,
}

/// MPI's bounds of a typemap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Bounds {
    size: i64,
    lb: i64,
    ub: i64,
    true_lb: i64,
    true_ub: i64,
    /// Largest member alignment, for [`StructPadding::Natural`].
    align: i64,
}

/// An MPI datatype: a typemap of (displacement, primitive) entries plus
/// explicit bounds. Cheap to clone (shared tree).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Datatype {
    pub(crate) node: Arc<Node>,
    bounds: Bounds,
}

impl fmt::Debug for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Datatype(size {}, lb {}, extent {}, true_lb {}, true_extent {}; {:?})",
            self.size(),
            self.lb(),
            self.extent(),
            self.true_lb(),
            self.true_extent(),
            self.node
        )
    }
}

/// `a + b`, `a * b` in i64, or an error naming `what` and the values.
fn add(what: &'static str, a: i64, b: i64) -> Result<i64> {
    a.checked_add(b).ok_or_else(|| Error::invalid(what, format!("{a} + {b}"), "overflows i64"))
}
fn mul(what: &'static str, a: i64, b: i64) -> Result<i64> {
    a.checked_mul(b).ok_or_else(|| Error::invalid(what, format!("{a} * {b}"), "overflows i64"))
}
fn non_negative(what: &'static str, v: i64) -> Result<i64> {
    if v < 0 {
        return Err(Error::invalid(what, v, "must not be negative"));
    }
    Ok(v)
}

/// Bounds of `blocklen` copies of a child at each displacement, accumulated.
struct BoundsAcc {
    size: i64,
    lb: Option<i64>,
    ub: i64,
    true_lb: Option<i64>,
    true_ub: i64,
    align: i64,
}

impl BoundsAcc {
    fn new() -> Self {
        BoundsAcc { size: 0, lb: None, ub: 0, true_lb: None, true_ub: 0, align: 1 }
    }

    /// Adds `blocklen` copies of `child` starting at byte `disp`.
    fn add_block(&mut self, disp: i64, blocklen: i64, child: &Datatype) -> Result<()> {
        if blocklen == 0 {
            return Ok(());
        }
        let c = child.bounds;
        let ext = c.ub - c.lb;
        let last = add("displacement", disp, mul("blocklen x extent", blocklen - 1, ext)?)?;
        let (first_copy, last_copy) = if ext >= 0 { (disp, last) } else { (last, disp) };
        let lb = add("lb", first_copy, c.lb)?;
        let ub = add("ub", last_copy, c.ub)?;
        match self.lb {
            None => {
                self.lb = Some(lb);
                self.ub = ub;
            }
            Some(v) => {
                self.lb = Some(v.min(lb));
                self.ub = self.ub.max(ub);
            }
        }
        self.size = add("size", self.size, mul("blocklen x size", blocklen, c.size)?)?;
        self.align = self.align.max(c.align);
        if c.size > 0 {
            let tlb = add("true_lb", first_copy, c.true_lb)?;
            let tub = add("true_ub", last_copy, c.true_ub)?;
            match self.true_lb {
                None => {
                    self.true_lb = Some(tlb);
                    self.true_ub = tub;
                }
                Some(v) => {
                    self.true_lb = Some(v.min(tlb));
                    self.true_ub = self.true_ub.max(tub);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Bounds {
        let lb = self.lb.unwrap_or(0);
        let ub = if self.lb.is_some() { self.ub } else { 0 };
        let true_lb = self.true_lb.unwrap_or(0);
        let true_ub = if self.true_lb.is_some() { self.true_ub } else { 0 };
        Bounds { size: self.size, lb, ub, true_lb, true_ub, align: self.align }
    }
}

impl Datatype {
    fn from_node(node: Node, bounds: Bounds) -> Self {
        Datatype { node: Arc::new(node), bounds }
    }

    /// A named type.
    pub fn named(p: Primitive) -> Self {
        let s = p.size();
        Datatype::from_node(Node::Named(p), Bounds { size: s, lb: 0, ub: s, true_lb: 0, true_ub: s, align: p.align() })
    }

    /// `MPI_BYTE`.
    pub fn byte() -> Self {
        Self::named(Primitive::Byte)
    }

    fn blocks(child: &Datatype, blocks: Vec<(i64, i64)>, shape: Shape) -> Result<Self> {
        let mut acc = BoundsAcc::new();
        for &(disp, len) in &blocks {
            non_negative("blocklength", len)?;
            acc.add_block(disp, len, child)?;
        }
        Ok(Datatype::from_node(Node::Blocks { child: child.clone(), blocks, shape }, acc.finish()))
    }

    /// Regular blocks: `dims` (count, byte stride) outer to inner, each a block
    /// of `blocklen` children. Expands the displacements for the bounds.
    fn regular(child: &Datatype, offset: i64, dims: Vec<(i64, i64)>, blocklen: i64) -> Result<Self> {
        non_negative("blocklength", blocklen)?;
        for &(count, _) in &dims {
            non_negative("count", count)?;
        }
        // Bounds of a regular grid need only its corners: lb/ub are reached at
        // an extreme index in each dimension.
        let mut acc = BoundsAcc::new();
        let empty = dims.iter().any(|&(c, _)| c == 0);
        if !empty {
            let mut lo = offset;
            let mut hi = offset;
            for &(count, stride) in &dims {
                let span = mul("count x stride", count - 1, stride)?;
                if span < 0 {
                    lo = add("displacement", lo, span)?;
                } else {
                    hi = add("displacement", hi, span)?;
                }
            }
            let blocks: i64 = dims.iter().try_fold(1i64, |a, &(c, _)| mul("count", a, c))?;
            acc.add_block(lo, blocklen, child)?;
            acc.add_block(hi, blocklen, child)?;
            // add_block counted the size twice; set it from the block count.
            acc.size = mul("size", mul("blocks x blocklen", blocks, blocklen)?, child.size())?;
        }
        let shape = Shape::Regular { offset, dims, blocklen };
        Ok(Datatype::from_node(Node::Blocks { child: child.clone(), blocks: Vec::new(), shape }, acc.finish()))
    }

    /// `MPI_Type_contiguous(count, self)`.
    pub fn contiguous(&self, count: i64) -> Result<Self> {
        non_negative("count", count)?;
        Self::regular(self, 0, vec![(1, 0)], count)
    }

    /// `MPI_Type_vector(count, blocklen, stride, self)`: stride in extents of `self`.
    pub fn vector(&self, count: i64, blocklen: i64, stride: i64) -> Result<Self> {
        self.hvector(count, blocklen, mul("stride x extent", stride, self.extent())?)
    }

    /// `MPI_Type_create_hvector(count, blocklen, stride_bytes, self)`.
    pub fn hvector(&self, count: i64, blocklen: i64, stride_bytes: i64) -> Result<Self> {
        non_negative("count", count)?;
        Self::regular(self, 0, vec![(count, stride_bytes)], blocklen)
    }

    /// `MPI_Type_indexed(blocklens, displs, self)`: displacements in extents of `self`.
    pub fn indexed(&self, blocklens: &[i64], displs: &[i64]) -> Result<Self> {
        let bytes =
            displs.iter().map(|&d| mul("displacement x extent", d, self.extent())).collect::<Result<Vec<_>>>()?;
        self.hindexed(blocklens, &bytes)
    }

    /// `MPI_Type_create_hindexed(blocklens, displs_bytes, self)`.
    pub fn hindexed(&self, blocklens: &[i64], displs_bytes: &[i64]) -> Result<Self> {
        if blocklens.len() != displs_bytes.len() {
            return Err(Error::invalid(
                "blocklengths/displacements",
                format!("{} vs {}", blocklens.len(), displs_bytes.len()),
                "must have the same length",
            ));
        }
        let blocks: Vec<(i64, i64)> = displs_bytes.iter().copied().zip(blocklens.iter().copied()).collect();
        Self::blocks(self, blocks, Shape::Irregular)
    }

    /// `MPI_Type_create_indexed_block(blocklen, displs, self)`.
    pub fn indexed_block(&self, blocklen: i64, displs: &[i64]) -> Result<Self> {
        self.indexed(&vec![blocklen; displs.len()], displs)
    }

    /// `MPI_Type_create_hindexed_block(blocklen, displs_bytes, self)`.
    pub fn hindexed_block(&self, blocklen: i64, displs_bytes: &[i64]) -> Result<Self> {
        self.hindexed(&vec![blocklen; displs_bytes.len()], displs_bytes)
    }

    /// `MPI_Type_create_struct(blocklens, displs_bytes, types)`.
    pub fn structure(
        blocklens: &[i64],
        displs_bytes: &[i64],
        types: &[Datatype],
        padding: StructPadding,
    ) -> Result<Self> {
        if blocklens.len() != displs_bytes.len() || blocklens.len() != types.len() {
            return Err(Error::invalid(
                "struct members",
                format!(
                    "{} blocklengths, {} displacements, {} types",
                    blocklens.len(),
                    displs_bytes.len(),
                    types.len()
                ),
                "must have the same length",
            ));
        }
        let mut acc = BoundsAcc::new();
        let mut members = Vec::with_capacity(types.len());
        for ((&len, &disp), t) in blocklens.iter().zip(displs_bytes).zip(types) {
            non_negative("blocklength", len)?;
            acc.add_block(disp, len, t)?;
            members.push((disp, len, t.clone()));
        }
        let mut b = acc.finish();
        if padding == StructPadding::Natural && b.ub > b.lb {
            let ext = b.ub - b.lb;
            let padded = (ext + b.align - 1) / b.align * b.align;
            b.ub = add("ub", b.lb, padded)?;
        }
        Ok(Datatype::from_node(Node::Struct { members }, b))
    }

    /// `MPI_Type_create_subarray(sizes, subsizes, starts, order, self)`.
    pub fn subarray(&self, sizes: &[i64], subsizes: &[i64], starts: &[i64], order: Order) -> Result<Self> {
        let n = sizes.len();
        if n == 0 || subsizes.len() != n || starts.len() != n {
            return Err(Error::invalid(
                "subarray dimensions",
                format!("{} sizes, {} subsizes, {} starts", n, subsizes.len(), starts.len()),
                "need the same non-zero number of each",
            ));
        }
        for i in 0..n {
            if sizes[i] < 1 {
                return Err(Error::invalid(
                    "subarray size",
                    format!("sizes[{i}] = {}", sizes[i]),
                    "must be at least 1",
                ));
            }
            if subsizes[i] < 0 || starts[i] < 0 || starts[i].checked_add(subsizes[i]).is_none_or(|e| e > sizes[i]) {
                return Err(Error::invalid(
                    "subarray",
                    format!("dimension {i}: start {} + subsize {} of size {}", starts[i], subsizes[i], sizes[i]),
                    "needs 0 <= start, 0 <= subsize, start + subsize <= size",
                ));
            }
        }
        // Byte stride of each dimension, in the given index order.
        let ext = self.extent();
        let mut strides = vec![0i64; n];
        let mut acc = ext;
        let fastest_first: Vec<usize> = match order {
            Order::C => (0..n).rev().collect(),
            Order::Fortran => (0..n).collect(),
        };
        for &i in &fastest_first {
            strides[i] = acc;
            acc = mul("subarray extent", acc, sizes[i])?;
        }
        let full_extent = acc;
        let mut offset = 0i64;
        for i in 0..n {
            offset = add("subarray start", offset, mul("start x stride", starts[i], strides[i])?)?;
        }
        // Outer to inner: the reverse of fastest-first.
        let dims: Vec<(i64, i64)> = fastest_first.iter().rev().map(|&i| (subsizes[i], strides[i])).collect();
        let inner = Self::regular(self, offset, dims, 1)?;
        inner.resized(0, full_extent)
    }

    /// `MPI_Type_create_resized(self, lb, extent)`.
    pub fn resized(&self, lb: i64, extent: i64) -> Result<Self> {
        let ub = add("lb + extent", lb, extent)?;
        let b = Bounds { lb, ub, ..self.bounds };
        Ok(Datatype::from_node(Node::Resized { child: self.clone(), lb, extent }, b))
    }

    /// `MPI_Type_dup(self)`: the same type.
    pub fn dup(&self) -> Self {
        self.clone()
    }

    /// Bytes of data in one element (`MPI_Type_size`).
    pub fn size(&self) -> i64 {
        self.bounds.size
    }

    /// Lower bound (`MPI_Type_get_extent`).
    pub fn lb(&self) -> i64 {
        self.bounds.lb
    }

    /// Extent: the distance between consecutive elements (`MPI_Type_get_extent`).
    pub fn extent(&self) -> i64 {
        self.bounds.ub - self.bounds.lb
    }

    /// Lower bound of the data alone (`MPI_Type_get_true_extent`).
    pub fn true_lb(&self) -> i64 {
        self.bounds.true_lb
    }

    /// Extent of the data alone (`MPI_Type_get_true_extent`).
    pub fn true_extent(&self) -> i64 {
        self.bounds.true_ub - self.bounds.true_lb
    }

    /// The typemap expanded to contiguous runs `(displacement, bytes)` in
    /// typemap order, one per primitive run, without merging: the naive
    /// reference the canonical form and packers are tested against. Its
    /// length can be huge for large types.
    pub fn typemap(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        self.walk(0, &mut |d, n| out.push((d, n)));
        out
    }

    /// Calls `f(displacement, bytes)` for every primitive of the typemap, in order.
    pub(crate) fn walk(&self, base: i64, f: &mut dyn FnMut(i64, i64)) {
        match &*self.node {
            Node::Named(p) => f(base, p.size()),
            Node::Blocks { child, blocks, shape } => {
                let ext = child.extent();
                let block = |disp: i64, len: i64, f: &mut dyn FnMut(i64, i64)| {
                    for j in 0..len {
                        child.walk(base + disp + j * ext, f);
                    }
                };
                match shape {
                    Shape::Irregular => {
                        for &(d, len) in blocks {
                            block(d, len, f);
                        }
                    }
                    Shape::Regular { offset, dims, blocklen } => {
                        let total: i64 = dims.iter().map(|d| d.0).product();
                        for flat in 0..total {
                            let mut rem = flat;
                            let mut disp = *offset;
                            for &(count, stride) in dims.iter().rev() {
                                disp += (rem % count) * stride;
                                rem /= count;
                            }
                            block(disp, *blocklen, f);
                        }
                    }
                }
            }
            Node::Struct { members } => {
                for (disp, len, t) in members {
                    let ext = t.extent();
                    for j in 0..*len {
                        t.walk(base + disp + j * ext, f);
                    }
                }
            }
            Node::Resized { child, .. } => child.walk(base, f),
        }
    }
}
