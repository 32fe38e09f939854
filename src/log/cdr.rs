//! OMG CDR (little-endian, XCDR1 as ROS 2 uses it): the byte layout of a ros2msg message.
//!
//! Primitives are aligned to their own size, counted from the end of the 4-byte encapsulation
//! header; a sequence is a `uint32` count then its elements; a string is a `uint32` length that
//! counts a terminating NUL. Not for: the message's fields (that is `schema`).

use std::fmt;

/// Appends CDR to a buffer that the caller reuses between messages.
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Clears `buf` and writes the CDR_LE encapsulation header.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]);
        Self { buf }
    }

    fn align(&mut self, n: usize) {
        let pad = (n - (self.buf.len() - 4) % n) % n;
        self.buf.resize(self.buf.len() + pad, 0);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.align(2);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn string(&mut self, s: &str) {
        self.u32(s.len() as u32 + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// A fixed-size array (`float64[N]`): no count.
    pub(crate) fn f64_array(&mut self, v: &[f64]) {
        for x in v {
            self.f64(*x);
        }
    }
    fn count(&mut self, n: usize) {
        self.u32(n as u32);
    }
    pub(crate) fn f64_seq(&mut self, v: impl ExactSizeIterator<Item = f64>) {
        self.count(v.len());
        for x in v {
            self.f64(x);
        }
    }
    pub(crate) fn f32_seq(&mut self, v: impl ExactSizeIterator<Item = f32>) {
        self.count(v.len());
        for x in v {
            self.f32(x);
        }
    }
    pub(crate) fn u64_seq(&mut self, v: impl ExactSizeIterator<Item = u64>) {
        self.count(v.len());
        for x in v {
            self.u64(x);
        }
    }
    pub(crate) fn u8_seq(&mut self, v: impl ExactSizeIterator<Item = u8>) {
        self.count(v.len());
        for x in v {
            self.u8(x);
        }
    }
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not CDR little-endian (the first four bytes).
    Encapsulation([u8; 4]),
    /// The message ended `need` bytes early, at byte `at`.
    Truncated {
        at: usize,
        need: usize,
    },
    /// A sequence or string claims more elements than the message can hold.
    BadLength {
        at: usize,
        len: u32,
    },
    BadString {
        at: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Encapsulation(h) => write!(f, "not a little-endian CDR message (header {h:02x?})"),
            DecodeError::Truncated { at, need } => {
                write!(f, "message truncated at byte {at} ({need} more bytes needed)")
            }
            DecodeError::BadLength { at, len } => write!(f, "length {len} at byte {at} exceeds the message"),
            DecodeError::BadString { at } => write!(f, "string at byte {at} is not NUL-terminated UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

macro_rules! prim {
    ($name:ident, $t:ty, $n:expr) => {
        pub fn $name(&mut self) -> Result<$t, DecodeError> {
            self.align($n);
            let b = self.take($n)?;
            Ok(<$t>::from_le_bytes(b.try_into().expect("take returns exactly n bytes")))
        }
    };
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Result<Self, DecodeError> {
        match data {
            [0x00, 0x01, _, _, ..] => Ok(Self { data, pos: 4 }),
            _ => {
                let mut h = [0u8; 4];
                let n = data.len().min(4);
                h[..n].copy_from_slice(&data[..n]);
                Err(DecodeError::Encapsulation(h))
            }
        }
    }

    fn align(&mut self, n: usize) {
        self.pos += (n - (self.pos - 4) % n) % n;
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError::Truncated { at: self.pos, need: self.pos.saturating_add(n) - self.data.len() }),
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    prim!(u16, u16, 2);
    prim!(u32, u32, 4);
    prim!(u64, u64, 8);
    prim!(f32, f32, 4);
    prim!(f64, f64, 8);

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let at = self.pos;
        let len = self.u32()? as usize;
        let b = self.take(len)?;
        match b.split_last() {
            Some((0, s)) => String::from_utf8(s.to_vec()).map_err(|_| DecodeError::BadString { at }),
            _ => Err(DecodeError::BadString { at }),
        }
    }

    pub(crate) fn f64_array<const N: usize>(&mut self) -> Result<[f64; N], DecodeError> {
        let mut out = [0.0; N];
        for x in out.iter_mut() {
            *x = self.f64()?;
        }
        Ok(out)
    }

    /// A sequence count, checked against the bytes left (each element at least `elem` bytes).
    fn count(&mut self, elem: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let len = self.u32()?;
        if (len as usize).saturating_mul(elem) > self.data.len() - self.pos {
            return Err(DecodeError::BadLength { at, len });
        }
        Ok(len as usize)
    }

    pub(crate) fn f64_seq(&mut self) -> Result<Vec<f64>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.f64()).collect()
    }
    pub(crate) fn f32_seq(&mut self) -> Result<Vec<f32>, DecodeError> {
        let n = self.count(4)?;
        (0..n).map(|_| self.f32()).collect()
    }
    pub(crate) fn u64_seq(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }
    pub(crate) fn u8_seq(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.count(1)?;
        Ok(self.take(n)?.to_vec())
    }
}
