//! The CAN frame every transport and device exchanges: classic CAN (up to 8 data bytes),
//! standard or extended identifiers, data or remote frames.
//!
//! Not for: transport details (timestamps, error frames) or the meaning of the payload.

use std::fmt;

/// Largest standard (11-bit) identifier.
pub const MAX_STANDARD_ID: u32 = 0x7FF;
/// Largest extended (29-bit) identifier.
pub const MAX_EXTENDED_ID: u32 = 0x1FFF_FFFF;

/// A classic CAN frame. `Copy` and fixed-size so that it crosses thread boundaries without
/// allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CanFrame {
    id: u32,
    extended: bool,
    remote: bool,
    len: u8,
    data: [u8; 8],
}

impl CanFrame {
    /// A data frame with an 11-bit identifier; `None` if the id or the length is out of range.
    pub fn standard(id: u32, data: &[u8]) -> Option<Self> {
        Self::new(id, false, false, data.len(), data)
    }

    /// A data frame with a 29-bit identifier; `None` if the id or the length is out of range.
    pub fn extended(id: u32, data: &[u8]) -> Option<Self> {
        Self::new(id, true, false, data.len(), data)
    }

    /// A remote (RTR) frame asking for `len` bytes.
    pub fn remote(id: u32, extended: bool, len: usize) -> Option<Self> {
        Self::new(id, extended, true, len, &[])
    }

    fn new(id: u32, extended: bool, remote: bool, len: usize, data: &[u8]) -> Option<Self> {
        let max_id = if extended { MAX_EXTENDED_ID } else { MAX_STANDARD_ID };
        if id > max_id || len > 8 {
            return None;
        }
        let mut buf = [0u8; 8];
        buf[..data.len()].copy_from_slice(data);
        Some(Self { id, extended, remote, len: len as u8, data: buf })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn is_extended(&self) -> bool {
        self.extended
    }

    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// Data length code: the number of data bytes (or requested bytes for a remote frame).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload; empty for a remote frame.
    pub fn data(&self) -> &[u8] {
        if self.remote {
            &[]
        } else {
            &self.data[..self.len as usize]
        }
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.extended {
            write!(f, "{:08X}", self.id)?;
        } else {
            write!(f, "{:03X}", self.id)?;
        }
        if self.remote {
            return write!(f, " R{}", self.len);
        }
        write!(f, " [{}]", self.len)?;
        for b in self.data() {
            write!(f, " {b:02X}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_ids_and_lengths() {
        assert!(CanFrame::standard(0x800, &[]).is_none());
        assert!(CanFrame::extended(0x2000_0000, &[]).is_none());
        assert!(CanFrame::standard(1, &[0; 9]).is_none());
        assert!(CanFrame::remote(1, false, 9).is_none());
    }

    #[test]
    fn data_is_the_payload_only() {
        let f = CanFrame::standard(0x001, &[1, 2, 3]).unwrap();
        assert_eq!(f.data(), &[1, 2, 3]);
        assert_eq!(format!("{f:?}"), "001 [3] 01 02 03");
        let r = CanFrame::remote(0x1234, true, 8).unwrap();
        assert_eq!(r.data(), &[] as &[u8]);
        assert_eq!(format!("{r:?}"), "00001234 R8");
    }
}
