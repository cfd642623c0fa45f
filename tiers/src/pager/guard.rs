//! Pin guards: while one lives, its copy stays in its tier (eviction skips
//! it) and the guard gives a byte or typed view of it. Dropping the guard
//! unpins. Guards stay on the thread that pinned.

use bytemuck::Pod;
use parking_lot::lock_api::{ArcRwLockReadGuard, ArcRwLockWriteGuard};
use parking_lot::RawRwLock;

use crate::ddr::HostBlock;
use crate::error::{Result, TierError};
use crate::hbm::DeviceBlock;
use crate::object::ObjectId;
use crate::tier::Tier;

/// A read pin, from [`crate::Pager::pin`].
pub struct PinGuard {
    id: ObjectId,
    copy: ReadCopy,
}

pub(crate) enum ReadCopy {
    Host(ArcRwLockReadGuard<RawRwLock, HostBlock>),
    Device(ArcRwLockReadGuard<RawRwLock, DeviceBlock>),
}

/// A write pin, from [`crate::Pager::pin_mut`]: the pinned copy is the
/// object's only copy (so it is dirty) until the guard drops.
pub struct PinMutGuard {
    id: ObjectId,
    copy: WriteCopy,
}

pub(crate) enum WriteCopy {
    Host(ArcRwLockWriteGuard<RawRwLock, HostBlock>),
    Device(ArcRwLockWriteGuard<RawRwLock, DeviceBlock>),
}

impl std::fmt::Debug for PinGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinGuard").field("id", &self.id).field("tier", &self.tier()).finish()
    }
}

impl std::fmt::Debug for PinMutGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinMutGuard").field("id", &self.id).field("tier", &self.tier()).finish()
    }
}

fn cast<T: Pod>(id: ObjectId, bytes: &[u8]) -> Result<&[T]> {
    check_cast::<T>(id, bytes.len(), bytes.as_ptr() as usize)?;
    Ok(bytemuck::cast_slice(bytes))
}

fn cast_mut<T: Pod>(id: ObjectId, bytes: &mut [u8]) -> Result<&mut [T]> {
    check_cast::<T>(id, bytes.len(), bytes.as_ptr() as usize)?;
    Ok(bytemuck::cast_slice_mut(bytes))
}

/// The checks bytemuck would panic on, as errors naming the object.
fn check_cast<T>(id: ObjectId, size: usize, addr: usize) -> Result<()> {
    let (elem, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    let type_name = std::any::type_name::<T>();
    if elem == 0 {
        return Err(TierError::View { id, size, type_name, reason: "zero-sized element type".into() });
    }
    if size % elem != 0 {
        let reason = format!("size is not a multiple of the element size {elem}");
        return Err(TierError::View { id, size, type_name, reason });
    }
    if addr % align != 0 {
        let reason = format!("the copy is not aligned to {align} bytes");
        return Err(TierError::View { id, size, type_name, reason });
    }
    Ok(())
}

fn not_host(id: ObjectId, tier: Tier) -> TierError {
    TierError::NotViewable { id, tier, what: "a host view (pin it in DDR)" }
}

fn not_device(id: ObjectId, tier: Tier) -> TierError {
    TierError::NotViewable { id, tier, what: "a device view (pin it in HBM)" }
}

impl PinGuard {
    pub(crate) fn new(id: ObjectId, copy: ReadCopy) -> Self {
        PinGuard { id, copy }
    }

    /// The object.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The tier of the pinned copy.
    pub fn tier(&self) -> Tier {
        match self.copy {
            ReadCopy::Host(_) => Tier::Ddr,
            ReadCopy::Device(_) => Tier::Hbm,
        }
    }

    /// The object's size in bytes.
    pub fn len(&self) -> usize {
        match &self.copy {
            ReadCopy::Host(b) => b.len(),
            ReadCopy::Device(d) => d.len(),
        }
    }

    /// Whether the object is empty (never: objects have at least 1 byte).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of a DDR copy.
    pub fn bytes(&self) -> Result<&[u8]> {
        match &self.copy {
            ReadCopy::Host(b) => Ok(b.bytes()),
            ReadCopy::Device(_) => Err(not_host(self.id, Tier::Hbm)),
        }
    }

    /// A DDR copy as a slice of `T` (e.g. `f32`, `half::bf16`).
    pub fn view<T: Pod>(&self) -> Result<&[T]> {
        cast(self.id, self.bytes()?)
    }

    /// The device memory of an HBM copy.
    pub fn device(&self) -> Result<&DeviceBlock> {
        match &self.copy {
            ReadCopy::Device(d) => Ok(d),
            ReadCopy::Host(_) => Err(not_device(self.id, Tier::Ddr)),
        }
    }
}

impl PinMutGuard {
    pub(crate) fn new(id: ObjectId, copy: WriteCopy) -> Self {
        PinMutGuard { id, copy }
    }

    /// The object.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The tier of the pinned copy.
    pub fn tier(&self) -> Tier {
        match self.copy {
            WriteCopy::Host(_) => Tier::Ddr,
            WriteCopy::Device(_) => Tier::Hbm,
        }
    }

    /// The object's size in bytes.
    pub fn len(&self) -> usize {
        match &self.copy {
            WriteCopy::Host(b) => b.len(),
            WriteCopy::Device(d) => d.len(),
        }
    }

    /// Whether the object is empty (never: objects have at least 1 byte).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of a DDR copy.
    pub fn bytes(&self) -> Result<&[u8]> {
        match &self.copy {
            WriteCopy::Host(b) => Ok(b.bytes()),
            WriteCopy::Device(_) => Err(not_host(self.id, Tier::Hbm)),
        }
    }

    /// The bytes of a DDR copy, to modify.
    pub fn bytes_mut(&mut self) -> Result<&mut [u8]> {
        match &mut self.copy {
            WriteCopy::Host(b) => Ok(b.bytes_mut()),
            WriteCopy::Device(_) => Err(not_host(self.id, Tier::Hbm)),
        }
    }

    /// A DDR copy as a slice of `T`.
    pub fn view<T: Pod>(&self) -> Result<&[T]> {
        cast(self.id, self.bytes()?)
    }

    /// A DDR copy as a mutable slice of `T`.
    pub fn view_mut<T: Pod>(&mut self) -> Result<&mut [T]> {
        let id = self.id;
        cast_mut(id, self.bytes_mut()?)
    }

    /// The device memory of an HBM copy.
    pub fn device(&self) -> Result<&DeviceBlock> {
        match &self.copy {
            WriteCopy::Device(d) => Ok(d),
            WriteCopy::Host(_) => Err(not_device(self.id, Tier::Ddr)),
        }
    }

    /// The device memory of an HBM copy, to modify (kernels, cudarc copies).
    pub fn device_mut(&mut self) -> Result<&mut DeviceBlock> {
        match &mut self.copy {
            WriteCopy::Device(d) => Ok(d),
            WriteCopy::Host(_) => Err(not_device(self.id, Tier::Ddr)),
        }
    }
}
