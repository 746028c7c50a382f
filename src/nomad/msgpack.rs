//! A small MessagePack decoder for the values Nomad sends: `msgpack_config` (plugin stanza) and
//! `msgpack_driver_config` (task stanza), both produced by go-cty's msgpack marshaller.
//!
//! Only decoding is needed in the plugin. Every msgpack format is understood so that a value we
//! did not expect yields a precise error instead of a misparse; extension values (cty's
//! "unknown" marker) decode to [`Value::Ext`] and are rejected by the typed layer above.

use std::fmt;

/// A decoded msgpack value. Maps keep their wire order (cty sorts keys).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    /// Any integer that fits i64.
    Int(i64),
    /// Integers above i64::MAX.
    UInt(u64),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Ext(i8, Vec<u8>),
}

impl Value {
    /// Short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bin(_) => "binary",
            Value::Array(_) => "list",
            Value::Map(_) => "map",
            Value::Ext(_, _) => "unknown value",
        }
    }

    /// Looks a string key up in a map value. `None` if this is not a map or the key is absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid msgpack at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// Nesting deeper than this is refused (a config is a handful of levels deep).
const MAX_DEPTH: usize = 64;

/// Decodes exactly one value; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let v = r.value(0)?;
    if r.pos != bytes.len() {
        return Err(r.err(format!("{} trailing bytes", bytes.len() - r.pos)));
    }
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err(format!("truncated: wanted {n} more bytes"))),
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        let l = self.be(n)?;
        // Every element takes at least one byte, so a length beyond the input is a lie.
        let l = usize::try_from(l).map_err(|_| self.err("length overflows"))?;
        if l > self.buf.len() - self.pos.min(self.buf.len()) {
            return Err(self.err(format!("length {l} exceeds the remaining input")));
        }
        Ok(l)
    }

    fn string(&mut self, n: usize) -> Result<Value, DecodeError> {
        let start = self.pos;
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Value::Str(s.to_owned())),
            Err(_) => Err(DecodeError {
                offset: start,
                reason: "string is not valid UTF-8".into(),
            }),
        }
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut items = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut entries = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn ext(&mut self, n: usize) -> Result<Value, DecodeError> {
        let ty = self.byte()? as i8;
        Ok(Value::Ext(ty, self.take(n)?.to_vec()))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let b = self.byte()?;
        Ok(match b {
            0x00..=0x7f => Value::Int(i64::from(b)),
            0x80..=0x8f => return self.map(usize::from(b & 0x0f), depth),
            0x90..=0x9f => return self.array(usize::from(b & 0x0f), depth),
            0xa0..=0xbf => return self.string(usize::from(b & 0x1f)),
            0xc0 => Value::Nil,
            0xc1 => {
                return Err(DecodeError {
                    offset: self.pos - 1,
                    reason: "reserved byte 0xc1".into(),
                })
            }
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (b - 0xc4))?;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (b - 0xc7))?;
                return self.ext(n);
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.be(8)?)),
            0xcc => Value::Int(self.be(1)? as i64),
            0xcd => Value::Int(self.be(2)? as i64),
            0xce => Value::Int(self.be(4)? as i64),
            0xcf => {
                let u = self.be(8)?;
                match i64::try_from(u) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::UInt(u),
                }
            }
            0xd0 => Value::Int(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => Value::Int(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => Value::Int(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => Value::Int(self.be(8)? as i64),
            0xd4 => return self.ext(1),
            0xd5 => return self.ext(2),
            0xd6 => return self.ext(4),
            0xd7 => return self.ext(8),
            0xd8 => return self.ext(16),
            0xd9..=0xdb => {
                let n = self.len(1 << (b - 0xd9))?;
                return self.string(n);
            }
            0xdc | 0xdd => {
                let n = self.len(2 << (b - 0xdc))?;
                return self.array(n, depth);
            }
            0xde | 0xdf => {
                let n = self.len(2 << (b - 0xde))?;
                return self.map(n, depth);
            }
            0xe0..=0xff => Value::Int(i64::from(b as i8)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn scalars_in_every_width() {
        assert_eq!(decode(&[0xc0]).unwrap(), Value::Nil);
        assert_eq!(decode(&[0xc3]).unwrap(), Value::Bool(true));
        assert_eq!(decode(&[0xc2]).unwrap(), Value::Bool(false));
        assert_eq!(decode(&[0x05]).unwrap(), Value::Int(5));
        assert_eq!(decode(&[0xff]).unwrap(), Value::Int(-1));
        assert_eq!(decode(&[0xcc, 200]).unwrap(), Value::Int(200));
        assert_eq!(decode(&[0xcd, 0x01, 0x00]).unwrap(), Value::Int(256));
        assert_eq!(decode(&[0xce, 0, 1, 0, 0]).unwrap(), Value::Int(65536));
        assert_eq!(
            decode(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(decode(&[0xd0, 0x80]).unwrap(), Value::Int(-128));
        assert_eq!(decode(&[0xd1, 0xff, 0x00]).unwrap(), Value::Int(-256));
        assert_eq!(decode(&[0xd2, 0xff, 0xff, 0xff, 0xfe]).unwrap(), Value::Int(-2));
        assert_eq!(
            decode(&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            Value::Int(i64::MIN)
        );
        let mut f = vec![0xcb];
        f.extend_from_slice(&2.5f64.to_be_bytes());
        assert_eq!(decode(&f).unwrap(), Value::Float(2.5));
        let mut f32b = vec![0xca];
        f32b.extend_from_slice(&1.5f32.to_be_bytes());
        assert_eq!(decode(&f32b).unwrap(), Value::Float(1.5));
    }

    #[test]
    fn strings_arrays_maps() {
        assert_eq!(decode(&[0xa3, b'a', b'b', b'c']).unwrap(), s("abc"));
        assert_eq!(decode(&[0xd9, 2, b'h', b'i']).unwrap(), s("hi"));
        assert_eq!(decode(&[0xda, 0, 1, b'x']).unwrap(), s("x"));
        assert_eq!(
            decode(&[0x92, 0x01, 0xc0]).unwrap(),
            Value::Array(vec![Value::Int(1), Value::Nil])
        );
        assert_eq!(
            decode(&[0xdc, 0, 1, 0xc3]).unwrap(),
            Value::Array(vec![Value::Bool(true)])
        );
        let m = decode(&[0x81, 0xa1, b'k', 0xa1, b'v']).unwrap();
        assert_eq!(m.get("k"), Some(&s("v")));
        assert_eq!(m.get("missing"), None);
        assert_eq!(decode(&[0xde, 0, 0]).unwrap(), Value::Map(vec![]));
        assert_eq!(decode(&[0xc4, 2, 1, 2]).unwrap(), Value::Bin(vec![1, 2]));
    }

    #[test]
    fn cty_unknown_is_an_ext_value() {
        assert_eq!(decode(&[0xd4, 0x00, 0x00]).unwrap(), Value::Ext(0, vec![0]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0xa5, b'a'],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xc1],
            &[0x01, 0x02],
            &[0xa2, 0xff, 0xfe],
            &[0xcb, 1, 2],
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should fail");
        }
        let deep = vec![0x91; 200];
        assert!(decode(&deep).is_err());
    }
}
