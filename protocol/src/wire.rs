//! Primitive encoders and a bounds-checked reader for the frame format.
//!
//! Integers are little-endian. A string is a `u16` length and UTF-8 bytes; an optional
//! string is a presence byte (0 or 1) followed by a string; a body is a `u32` length and
//! raw bytes. Every length is checked against the bytes left and a per-field maximum.

use bytes::{BufMut, Bytes, BytesMut};

/// Why bytes could not be decoded into a [`Frame`](crate::Frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame has no bytes at all.
    #[error("empty frame")]
    Empty,
    /// The first byte names no frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The frame ends before its last field.
    #[error("truncated frame")]
    Truncated,
    /// A field is longer than allowed.
    #[error("{field} is {len} bytes, more than the limit of {max}")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string field is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A field has a value outside its domain.
    #[error("invalid {0}")]
    InvalidValue(&'static str),
    /// Bytes are left after the last field.
    #[error("{0} unexpected bytes after the frame")]
    TrailingBytes(usize),
}

pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= u16::MAX as usize);
    out.put_u16_le(s.len() as u16);
    out.put_slice(s.as_bytes());
}

pub(crate) fn put_opt_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_u8(0),
        Some(s) => {
            out.put_u8(1);
            put_str(out, s);
        }
    }
}

pub(crate) fn put_body(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

/// A cursor over one frame's bytes that never reads past the end.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn string(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        let b = self.take(len)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8(field))
    }

    pub(crate) fn opt_string(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string(field, max).map(Some),
            _ => Err(DecodeError::InvalidValue(field)),
        }
    }

    pub(crate) fn body(&mut self, max: usize) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong {
                field: "body",
                len,
                max,
            });
        }
        if self.buf.len() - self.pos < len {
            return Err(DecodeError::Truncated);
        }
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len() - self.pos))
        }
    }
}
