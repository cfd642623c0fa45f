//! The embedded PTX modules and the kernel signatures read from them.
//!
//! `build.rs` embeds one module per `kernels/*.cu` (compiled by nvcc, or the
//! committed `ptx/` after its freshness check). The `.entry` parser here lets
//! tests and the executor check a launch plan's arguments against what the
//! compiled kernel really takes.

use crate::error::{Error, Result};

/// One embedded PTX module.
#[derive(Debug, Clone, Copy)]
pub struct PtxModule {
    /// Module name: the stem of its `kernels/*.cu` source.
    pub name: &'static str,
    /// The source file it was compiled from, relative to the repository.
    pub source: &'static str,
    /// The PTX text.
    pub ptx: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/ptx_modules.rs"));

/// The virtual architecture every module targets.
pub const PTX_TARGET: &str = "compute_80";

/// The PTX ISA version of the embedded modules (from their `.version` line).
pub fn ptx_isa_version() -> Option<&'static str> {
    MODULES.first().and_then(|m| m.ptx.lines().find_map(|l| l.trim().strip_prefix(".version ")).map(str::trim))
}

/// The embedded module named `name`.
pub fn module(name: &str) -> Result<&'static PtxModule> {
    MODULES.iter().find(|m| m.name == name).ok_or_else(|| Error::UnknownModule {
        module: name.to_string(),
        known: MODULES.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    })
}

/// The type of one `.param` of a kernel entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamType {
    /// PTX type name without the dot: `u64`, `f32`, `b8`...
    pub ty: String,
    /// Size in bytes (element size times array length).
    pub size: usize,
}

impl ParamType {
    /// Whether the PTX type is floating point.
    pub fn is_float(&self) -> bool {
        self.ty.starts_with('f')
    }
}

/// A kernel entry and its parameters, as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySignature {
    /// The entry (kernel) name.
    pub name: String,
    /// Its parameters in order.
    pub params: Vec<ParamType>,
}

/// Parses every `.entry` of a PTX text.
pub fn parse_entries(ptx: &str) -> Result<Vec<EntrySignature>, String> {
    let mut entries = Vec::new();
    let mut rest = ptx;
    while let Some(pos) = rest.find(".entry ") {
        rest = &rest[pos + ".entry ".len()..];
        let open = rest.find('(').ok_or("`.entry` without `(`")?;
        let name = rest[..open].trim().to_string();
        let close = rest.find(')').ok_or_else(|| format!("entry {name}: no `)`"))?;
        let mut params = Vec::new();
        for decl in rest[open + 1..close].split(',') {
            let decl = decl.trim();
            if decl.is_empty() {
                continue;
            }
            params.push(parse_param(decl).map_err(|e| format!("entry {name}: {e}"))?);
        }
        entries.push(EntrySignature { name, params });
        rest = &rest[close..];
    }
    Ok(entries)
}

/// Parses `.param .u64 name`, `.param .u64 .ptr .align 8 name` or
/// `.param .align 4 .b8 name[12]`.
fn parse_param(decl: &str) -> Result<ParamType, String> {
    let mut ty = None;
    let mut array_len = 1usize;
    let mut words = decl.split_whitespace().peekable();
    if words.next() != Some(".param") {
        return Err(format!("not a .param: {decl:?}"));
    }
    while let Some(w) = words.next() {
        match w {
            ".align" => {
                words.next();
            }
            ".ptr" | ".global" | ".const" | ".shared" | ".local" => {}
            w if w.starts_with('.') && ty.is_none() => ty = Some(w[1..].to_string()),
            name => {
                if let (Some(l), Some(r)) = (name.find('['), name.find(']')) {
                    array_len = name[l + 1..r].parse().map_err(|_| format!("bad array length in {decl:?}"))?;
                }
            }
        }
    }
    let ty = ty.ok_or_else(|| format!("no type in {decl:?}"))?;
    let bits: usize = ty[1..].parse().map_err(|_| format!("unknown PTX type .{ty} in {decl:?}"))?;
    Ok(ParamType { size: bits / 8 * array_len, ty })
}

/// The signature of `kernel` in module `module`.
pub fn entry_signature(module_name: &str, kernel: &str) -> Result<EntrySignature> {
    let m = module(module_name)?;
    let entries = parse_entries(m.ptx).map_err(|detail| Error::SignatureMismatch {
        kernel: kernel.to_string(),
        detail: format!("cannot parse PTX of module {module_name}: {detail}"),
    })?;
    entries
        .into_iter()
        .find(|e| e.name == kernel)
        .ok_or_else(|| Error::UnknownKernel { module: module_name.to_string(), kernel: kernel.to_string() })
}
