//! The command as the fingerprint reads it: JSON with every map's entries in key order.
//!
//! A retry must be recognised as the same command, and a `HashMap` lists its entries in an
//! order of its own for every instance: two maps with the same entries serialize differently.
//! [`Canonical`] serializes a value exactly as `serde_json` does, except that the entries of
//! each map (anything serialized with `serialize_map`) are written in key order: number keys
//! by value, others by their text. Structs keep their field order, so a command without
//! maps, or whose maps were already in that order (a `BTreeMap` of strings or numbers), reads
//! byte for byte as before, and so do the fingerprints stored for it.

use std::cmp::Ordering;

use serde::Serialize;
use serde::ser::{self, Error as _};
use serde_json::value::RawValue;

/// `value`, serialized with its maps' entries in key order (only through `serde_json`: a map's
/// values are written as raw JSON).
pub(crate) struct Canonical<'a, T: ?Sized>(pub &'a T);

impl<T: ?Sized + Serialize> Serialize for Canonical<'_, T> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Sorting(serializer))
    }
}

/// Passes everything through to the inner serializer, wrapping nested values, and buffers a
/// map's entries to write them in order.
struct Sorting<S>(S);

/// A compound (sequence, tuple, struct, variant) whose elements are wrapped in turn.
struct Compound<C>(C);

/// A map's entries, each key as text (with whether it was a number) and each value as JSON.
struct Entries<M> {
    map: M,
    entries: Vec<(Key, Box<RawValue>)>,
    key: Option<Key>,
}

/// A map key as `serde_json` writes it (always a string in JSON).
struct Key {
    text: String,
    number: Option<f64>,
}

impl Key {
    fn of<T: ?Sized + Serialize, E: ser::Error>(key: &T) -> Result<Self, E> {
        // As JSON text, as serde_json writes a value (i128 and f32 as it writes them too).
        let text = serde_json::to_string(&Canonical(key)).map_err(E::custom)?;
        if text.starts_with('"') {
            let text: String = serde_json::from_str(&text).map_err(E::custom)?;
            return Ok(Self { text, number: None });
        }
        match text.as_str() {
            "true" | "false" => Ok(Self { text, number: None }),
            _ => match text.parse::<f64>() {
                Ok(number) => Ok(Self {
                    number: Some(number),
                    text,
                }),
                Err(_) => Err(E::custom("key must be a string")),
            },
        }
    }

    fn order(&self, other: &Self) -> Ordering {
        match (self.number, other.number) {
            (Some(a), Some(b)) => a.total_cmp(&b).then_with(|| self.text.cmp(&other.text)),
            _ => self.text.cmp(&other.text),
        }
    }
}

macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.0.$method(v)
        })*
    };
}

impl<S: ser::Serializer> ser::Serializer for Sorting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Entries<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Canonical(value))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Canonical(value))
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Canonical(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Compound)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compound)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compound)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compound)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Ok(Entries {
            map: self.0.serialize_map(len)?,
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Compound)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compound)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! elements {
    ($trait:ident, $element:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn $element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), C::Error> {
                self.0.$element(&Canonical(value))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    };
}

elements!(SerializeSeq, serialize_element);
elements!(SerializeTuple, serialize_element);
elements!(SerializeTupleStruct, serialize_field);
elements!(SerializeTupleVariant, serialize_field);

macro_rules! fields {
    ($trait:ident) => {
        impl<C: ser::$trait> ser::$trait for Compound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), C::Error> {
                self.0.serialize_field(key, &Canonical(value))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    };
}

fields!(SerializeStruct);
fields!(SerializeStructVariant);

impl<M: ser::SerializeMap> ser::SerializeMap for Entries<M> {
    type Ok = M::Ok;
    type Error = M::Error;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), M::Error> {
        self.key = Some(Key::of(key)?);
        Ok(())
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), M::Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| M::Error::custom("a map value without its key"))?;
        let value = serde_json::value::to_raw_value(&Canonical(value)).map_err(M::Error::custom)?;
        self.entries.push((key, value));
        Ok(())
    }

    fn end(mut self) -> Result<M::Ok, M::Error> {
        self.entries.sort_by(|a, b| a.0.order(&b.0));
        for (key, value) in &self.entries {
            self.map.serialize_entry(&key.text, value)?;
        }
        self.map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;
    use serde::ser::SerializeMap;
    use uuid::Uuid;

    use crate::handler::fingerprint;

    /// A map that serializes its entries in exactly the order given, as a `HashMap` does in
    /// whatever order its hasher put them.
    #[derive(Clone)]
    struct Entries(Vec<(&'static str, u32)>);

    impl Serialize for Entries {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    #[derive(Serialize)]
    struct Tag {
        zeta: &'static str,
        labels: Entries,
        alpha: Option<Entries>,
    }

    fn tag(entries: Vec<(&'static str, u32)>) -> Tag {
        Tag {
            zeta: "z",
            labels: Entries(entries.clone()),
            alpha: Some(Entries(entries)),
        }
    }

    #[test]
    fn a_map_is_the_same_command_in_whatever_order_it_lists_its_entries() {
        let stream = Uuid::new_v4();
        let forward = tag(vec![("a", 1), ("b", 2), ("c", 3)]);
        let backward = tag(vec![("c", 3), ("b", 2), ("a", 1)]);
        assert_eq!(
            fingerprint(stream, &forward).unwrap(),
            fingerprint(stream, &backward).unwrap()
        );
        let different = tag(vec![("c", 3), ("b", 2), ("a", 2)]);
        assert_ne!(
            fingerprint(stream, &forward).unwrap(),
            fingerprint(stream, &different).unwrap()
        );
        // A HashMap rebuilt from the same pairs (each with its own random order).
        let pairs: Vec<(String, u32)> = (0..32).map(|i| (format!("label-{i}"), i)).collect();
        let first: HashMap<String, u32> = pairs.iter().cloned().collect();
        for _ in 0..20 {
            let again: HashMap<String, u32> = pairs.iter().rev().cloned().collect();
            assert_eq!(
                fingerprint(stream, &first).unwrap(),
                fingerprint(stream, &again).unwrap()
            );
        }
    }

    #[test]
    fn commands_already_in_order_keep_the_fingerprint_they_always_had() {
        // Records written before maps were put in order must still match their retries:
        // structs keep their field order, and maps already in key order are unchanged.
        #[derive(Serialize)]
        enum Command {
            Place {
                zeta: u8,
                lines: Vec<(String, i64)>,
                tags: BTreeMap<String, String>,
                counts: BTreeMap<u32, u8>,
                note: Option<String>,
            },
            Cancel(String),
        }
        let stream = Uuid::new_v4();
        let plain = |command: &Command| -> [u8; 32] {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            hasher.update(stream.as_bytes());
            hasher.update(serde_json::to_vec(command).unwrap());
            hasher.finalize().into()
        };
        let place = Command::Place {
            zeta: 1,
            lines: vec![("sku-1".into(), 2), ("sku-0".into(), -1)],
            tags: [("b".into(), "2".into()), ("a".into(), "1".into())]
                .into_iter()
                .collect(),
            // In number order, not text order ("10" before "2").
            counts: [(10, 1), (2, 2), (300, 3)].into_iter().collect(),
            note: None,
        };
        assert_eq!(fingerprint(stream, &place).unwrap(), plain(&place));
        let cancel = Command::Cancel("why".into());
        assert_eq!(fingerprint(stream, &cancel).unwrap(), plain(&cancel));
    }

    #[test]
    fn keys_serde_json_writes_are_written_alike() {
        // Keys beyond 64 bits and f32 keys, as serde_json writes them in a map of one entry.
        let stream = Uuid::new_v4();
        let plain = |json: Vec<u8>| -> [u8; 32] {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            hasher.update(stream.as_bytes());
            hasher.update(json);
            hasher.finalize().into()
        };
        let wide: BTreeMap<i128, u8> = [(i128::MAX, 1)].into_iter().collect();
        assert_eq!(
            fingerprint(stream, &wide).unwrap(),
            plain(serde_json::to_vec(&wide).unwrap())
        );
        let unit: HashMap<bool, u8> = [(true, 1)].into_iter().collect();
        assert_eq!(
            fingerprint(stream, &unit).unwrap(),
            plain(serde_json::to_vec(&unit).unwrap())
        );
    }

    #[test]
    fn maps_of_number_keys_and_maps_inside_maps_are_put_in_order() {
        let stream = Uuid::new_v4();
        let one: HashMap<u32, HashMap<String, Vec<u8>>> = (0..16)
            .map(|i| {
                (
                    i,
                    (0..8).map(|j| (format!("k{j}"), vec![j as u8])).collect(),
                )
            })
            .collect();
        let two: HashMap<u32, HashMap<String, Vec<u8>>> = (0..16)
            .rev()
            .map(|i| {
                (
                    i,
                    (0..8)
                        .rev()
                        .map(|j| (format!("k{j}"), vec![j as u8]))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            fingerprint(stream, &one).unwrap(),
            fingerprint(stream, &two).unwrap()
        );
    }
}
