//! PostgreSQL's `xid8` (a 64-bit transaction id) and the gap-safe log cursor built on it.

use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// A full 64-bit transaction id (`xid8`), as `pg_current_xact_id()` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Xid8(pub u64);

impl<'a> FromSql<'a> for Xid8 {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("xid8 must be 8 bytes, got {}", raw.len()))?;
        Ok(Self(u64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "xid8"
    }
}

impl ToSql for Xid8 {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_u64(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "xid8"
    }

    to_sql_checked!();
}

/// A point in the gap-safe order of the log: events are delivered ordered by the writing
/// transaction's id, then by global position. A subscriber that resumes after a cursor misses
/// nothing, even when transactions committed out of position order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    /// The writing transaction's id.
    pub transaction_id: Xid8,
    /// The event's global position.
    pub global_position: u64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor {
        transaction_id: Xid8(0),
        global_position: 0,
    };
}

/// `<transaction id>-<global position>`, e.g. `749-1042`.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.transaction_id.0, self.global_position)
    }
}

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cursor is two unsigned integers joined by '-', such as 749-1042")]
pub struct CursorParseError;

impl FromStr for Cursor {
    type Err = CursorParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (xid, position) = text.split_once('-').ok_or(CursorParseError)?;
        let parse = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CursorParseError);
            }
            s.parse::<u64>().map_err(|_| CursorParseError)
        };
        let global_position = parse(position)?;
        if global_position > i64::MAX as u64 {
            return Err(CursorParseError);
        }
        Ok(Self {
            transaction_id: Xid8(parse(xid)?),
            global_position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let cursor = Cursor {
            transaction_id: Xid8(749),
            global_position: 1042,
        };
        assert_eq!(cursor.to_string().parse(), Ok(cursor));
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "1--1",
            "+1-1",
            "1-99999999999999999999",
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorParseError), "{bad:?}");
        }
    }

    #[test]
    fn cursors_order_by_transaction_first() {
        let a = Cursor {
            transaction_id: Xid8(5),
            global_position: 100,
        };
        let b = Cursor {
            transaction_id: Xid8(6),
            global_position: 1,
        };
        assert!(a < b);
    }
}
