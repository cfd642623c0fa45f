//! The canonical form of a datatype: an N-dimensional strided grid of
//! positions, each holding the same list of contiguous segments.
//!
//! The typemap of a [`Layout`] is, in order: for every index of `dims`
//! (row-major, `dims[0]` outermost), for every segment, the bytes
//! `[position + segment.offset, + segment.len)` where `position` is
//! `sum(index[k] * dims[k].stride)`. This is MPI's typemap order, so packing
//! in it gives exactly `MPI_Pack`'s bytes.
//!
//! Canonicalization (TEMPI's idea, taken further): dense dimensions fold into
//! the segment, adjacent dimensions that tile each other merge, count-1
//! dimensions vanish, regular segment lists become dimensions, irregular
//! types (indexed, struct) become merged segment lists, with no limit on the
//! number of dimensions. Unlike TEMPI, dimensions are not sorted by stride:
//! that would change the order of the packed bytes, and `MPI_Pack` output
//! must match the MPI library's byte for byte. Two constructions of one
//! typemap yield equal layouts.

use crate::error::{Error, Result};

use super::types::{Datatype, Node, Shape};

/// One dimension of the position grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dim {
    /// Number of positions along it (>= 2 in a canonical layout).
    pub count: u64,
    /// Bytes between consecutive positions (may be negative).
    pub stride: i64,
}

/// A contiguous run of bytes at `offset` from a grid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Byte offset from the position.
    pub offset: i64,
    /// Length in bytes (> 0 in a canonical layout).
    pub len: u64,
}

/// A canonical typemap. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Layout {
    /// The position grid, outermost first.
    pub dims: Vec<Dim>,
    /// The segments at every position, in typemap order.
    pub segments: Vec<Segment>,
}

/// Calls `f(offset)` for every position of the grid `dims` (outermost
/// first), innermost fastest; once, at 0, for no dims. Allocates nothing
/// for up to 8 dims (a pack's hot path calls it per message).
pub(crate) fn for_each_position(dims: &[Dim], mut f: impl FnMut(i64)) {
    if dims.iter().any(|d| d.count == 0) {
        return;
    }
    let mut small = [0u64; 8];
    let mut large = Vec::new();
    let idx: &mut [u64] = if dims.len() <= small.len() {
        &mut small[..dims.len()]
    } else {
        large.resize(dims.len(), 0);
        &mut large
    };
    let mut pos = 0i64;
    loop {
        f(pos);
        // Odometer over dims, innermost fastest.
        let mut k = dims.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            pos += dims[k].stride;
            if idx[k] < dims[k].count {
                break;
            }
            pos -= dims[k].stride * dims[k].count as i64;
            idx[k] = 0;
        }
    }
}

/// The most segments an irregular type may expand to (16 bytes each).
pub const MAX_SEGMENTS: usize = 1 << 26;

impl Layout {
    /// The layout of one primitive run.
    fn run(offset: i64, len: u64) -> Self {
        Layout { dims: Vec::new(), segments: vec![Segment { offset, len }] }
    }

    /// Whether the typemap is empty.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Number of grid positions.
    pub fn positions(&self) -> u64 {
        self.dims.iter().map(|d| d.count).product()
    }

    /// Bytes of data at one position.
    pub fn segment_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// A single contiguous segment and no dimensions: one memcpy.
    pub fn is_contiguous(&self) -> bool {
        self.dims.is_empty() && self.segments.len() <= 1
    }

    /// `[lo, hi)`: the bytes the typemap touches, relative to its origin.
    /// Empty layouts give `(0, 0)`.
    pub fn span(&self) -> (i128, i128) {
        if self.is_empty() {
            return (0, 0);
        }
        let (mut lo, mut hi) = (0i128, 0i128);
        for d in &self.dims {
            let reach = i128::from(d.stride) * (i128::from(d.count) - 1);
            if reach < 0 {
                lo += reach;
            } else {
                hi += reach;
            }
        }
        let seg_lo = self.segments.iter().map(|s| i128::from(s.offset)).min().unwrap_or(0);
        let seg_hi = self.segments.iter().map(|s| i128::from(s.offset) + i128::from(s.len)).max().unwrap_or(0);
        (lo + seg_lo, hi + seg_hi)
    }

    /// Calls `f(offset, len)` for every run of the typemap, in order.
    pub fn for_each_run(&self, mut f: impl FnMut(i64, u64)) {
        if self.is_empty() {
            return;
        }
        for_each_position(&self.dims, |pos| {
            for s in &self.segments {
                f(pos + s.offset, s.len);
            }
        });
    }

    /// The typemap as a flat segment list (merged), for irregular parents.
    fn expanded(&self) -> Result<Vec<Segment>> {
        let n = (self.positions() as u128) * self.segments.len() as u128;
        if n > MAX_SEGMENTS as u128 {
            return Err(too_many(n));
        }
        let mut out = Vec::with_capacity(n as usize);
        self.for_each_run(|offset, len| push_merged(&mut out, Segment { offset, len }));
        Ok(out)
    }

    /// Prepends `dims` (outermost first) to this layout and shifts it by `offset`.
    fn replicate(mut self, offset: i64, dims: &[Dim]) -> Self {
        for s in &mut self.segments {
            s.offset += offset;
        }
        let mut all = dims.to_vec();
        all.extend_from_slice(&self.dims);
        self.dims = all;
        self
    }

    /// Brings the layout to canonical form (see the module documentation).
    pub fn normalize(mut self) -> Self {
        let mut segs: Vec<Segment> = Vec::with_capacity(self.segments.len());
        for s in self.segments.drain(..) {
            if s.len > 0 {
                push_merged(&mut segs, s);
            }
        }
        self.segments = segs;
        if self.segments.is_empty() || self.dims.iter().any(|d| d.count == 0) {
            return Layout::default();
        }
        self.dims.retain(|d| d.count != 1);
        loop {
            let mut changed = false;
            // A dense innermost dimension folds into a single segment.
            if let (Some(d), [s]) = (self.dims.last().copied(), self.segments.as_mut_slice()) {
                if i128::from(d.stride) == i128::from(s.len) {
                    s.len *= d.count;
                    self.dims.pop();
                    changed = true;
                }
            }
            // Adjacent dimensions where the outer one tiles the inner merge.
            let mut k = 0;
            while k + 1 < self.dims.len() {
                let (o, i) = (self.dims[k], self.dims[k + 1]);
                if i128::from(o.stride) == i128::from(i.stride) * i128::from(i.count) {
                    self.dims[k] = Dim { count: o.count * i.count, stride: i.stride };
                    self.dims.remove(k + 1);
                    changed = true;
                } else {
                    k += 1;
                }
            }
            // A regular segment list becomes an innermost dimension.
            if self.segments.len() > 1 {
                let first = self.segments[0];
                let step = self.segments[1].offset.wrapping_sub(first.offset);
                let regular = self.segments.iter().enumerate().all(|(j, s)| {
                    s.len == first.len
                        && i128::from(s.offset) == i128::from(first.offset) + j as i128 * i128::from(step)
                });
                if regular {
                    self.dims.push(Dim { count: self.segments.len() as u64, stride: step });
                    self.segments = vec![first];
                    changed = true;
                }
            }
            if !changed {
                return self;
            }
        }
    }

    /// The layout of `count` elements `extent` bytes apart.
    pub fn repeated(&self, count: u64, extent: i64) -> Self {
        self.clone().replicate(0, &[Dim { count, stride: extent }]).normalize()
    }
}

fn too_many(n: u128) -> Error {
    Error::invalid(
        "datatype",
        format!("{n} segments"),
        format!("an irregular type may expand to at most {MAX_SEGMENTS} contiguous segments"),
    )
}

/// Appends `s`, merging it into the last segment when it continues it.
fn push_merged(out: &mut Vec<Segment>, s: Segment) {
    if let Some(last) = out.last_mut() {
        if i128::from(last.offset) + i128::from(last.len) == i128::from(s.offset) {
            last.len += s.len;
            return;
        }
    }
    out.push(s);
}

/// If `positions` is an arithmetic progression, its (first, step).
fn progression(positions: &[i64]) -> Option<(i64, i64)> {
    let first = *positions.first()?;
    let step = positions.get(1).map_or(0, |p| p.wrapping_sub(first));
    positions
        .iter()
        .enumerate()
        .all(|(j, &p)| i128::from(p) == i128::from(first) + j as i128 * i128::from(step))
        .then_some((first, step))
}

/// Canonical layout of `t` (bounds are on the datatype itself).
pub fn layout_of(t: &Datatype) -> Result<Layout> {
    Ok(match &*t.node {
        Node::Named(p) => Layout::run(0, p.size() as u64),
        Node::Resized { child, .. } => layout_of(child)?,
        Node::Blocks { child, blocks, shape } => {
            let inner = layout_of(child)?;
            let ext = child.extent();
            match shape {
                Shape::Regular { offset, dims, blocklen } => {
                    let mut all: Vec<Dim> = dims.iter().map(|&(c, s)| Dim { count: c as u64, stride: s }).collect();
                    all.push(Dim { count: *blocklen as u64, stride: ext });
                    inner.replicate(*offset, &all).normalize()
                }
                Shape::Irregular => {
                    let mut positions = Vec::new();
                    for &(d, len) in blocks {
                        for j in 0..len {
                            positions.push(d + j * ext);
                        }
                        if positions.len() > MAX_SEGMENTS {
                            return Err(too_many(positions.len() as u128));
                        }
                    }
                    from_positions(&[(positions, inner)])?
                }
            }
        }
        Node::Struct { members } => {
            let mut parts = Vec::with_capacity(members.len());
            for (d, len, member) in members {
                let ext = member.extent();
                let positions: Vec<i64> = (0..*len).map(|j| d + j * ext).collect();
                parts.push((positions, layout_of(member)?));
            }
            from_positions(&parts)?
        }
    })
}

/// The layout of each part's inner layout placed at each of its positions,
/// parts in order: a regular grid when there is one part at regularly spaced
/// positions, else a merged segment list.
fn from_positions(parts: &[(Vec<i64>, Layout)]) -> Result<Layout> {
    if let [(positions, inner)] = parts {
        if let Some((first, step)) = progression(positions) {
            let dim = Dim { count: positions.len() as u64, stride: step };
            return Ok(inner.clone().replicate(first, &[dim]).normalize());
        }
    }
    let mut segs = Vec::new();
    for (positions, inner) in parts {
        let runs = inner.expanded()?;
        let n = segs.len() as u128 + positions.len() as u128 * runs.len() as u128;
        if n > MAX_SEGMENTS as u128 {
            return Err(too_many(n));
        }
        for &p in positions {
            for r in &runs {
                push_merged(&mut segs, Segment { offset: p + r.offset, len: r.len });
            }
        }
    }
    Ok(Layout { dims: Vec::new(), segments: segs }.normalize())
}
