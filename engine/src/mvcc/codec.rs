//! The small binary vocabulary shared by the command encoding and the
//! stored records: LEB128 varints (zigzag for signed values), and byte
//! strings as a varint length followed by the bytes. Decoding checks every
//! length against what is left, so garbage gives an error, never a panic or
//! a huge allocation.

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated at byte {at} while reading {what}")]
    Truncated { what: &'static str, at: usize },
    #[error("invalid {what} at byte {at}: {detail}")]
    Invalid {
        what: &'static str,
        at: usize,
        detail: String,
    },
    #[error("unsupported format version {found} (this build reads {supported})")]
    Version { found: u8, supported: u8 },
    #[error("{0} bytes left over after the end")]
    Trailing(usize),
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn invalid(&self, what: &'static str, detail: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            what,
            at: self.pos,
            detail: detail.into(),
        }
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Truncated { what, at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    pub fn uvarint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            if shift == 63 && b > 1 {
                return Err(DecodeError::Invalid {
                    what,
                    at: start,
                    detail: "varint overflows 64 bits".into(),
                });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid {
            what,
            at: start,
            detail: "varint longer than 10 bytes".into(),
        })
    }

    pub fn ivarint(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let u = self.uvarint(what)?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    /// A non-negative i64 stored as a uvarint.
    pub fn nonneg(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let at = self.pos;
        let u = self.uvarint(what)?;
        i64::try_from(u).map_err(|_| DecodeError::Invalid {
            what,
            at,
            detail: format!("{u} exceeds i64"),
        })
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => {
                self.pos -= 1;
                Err(self.invalid(what, format!("{b} is not 0 or 1")))
            }
        }
    }

    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.uvarint(what)?;
        if len > self.remaining() as u64 {
            return Err(DecodeError::Truncated { what, at });
        }
        let s = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }

    /// A count of items that each take at least one byte, checked against
    /// what is left so a garbage count cannot make the caller allocate.
    pub fn count(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.uvarint(what)?;
        if n > self.remaining() as u64 {
            return Err(DecodeError::Invalid {
                what,
                at,
                detail: format!("count {n} exceeds the {} bytes left", self.remaining()),
            });
        }
        Ok(n as usize)
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        let vals = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let mut out = Vec::new();
        for v in vals {
            put_uvarint(&mut out, v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            put_ivarint(&mut out, v);
        }
        let mut r = Reader::new(&out);
        for v in vals {
            assert_eq!(r.uvarint("v").unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(r.ivarint("v").unwrap(), v);
        }
        r.finish().unwrap();
        assert!(Reader::new(&[0xff; 11]).uvarint("v").is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .uvarint("v")
                .is_err()
        );
        assert!(matches!(
            Reader::new(&[5, 1, 2]).bytes("b"),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(Reader::new(&[2]).bool("b").is_err());
    }
}
