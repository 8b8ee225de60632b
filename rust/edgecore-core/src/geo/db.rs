//! MaxMind DB lookups (City, Country and ASN databases) through the maxminddb crate, memory-mapped.
//!
//! - The reader sits in an `ArcSwap`: `reload()` opens the new file and swaps it in atomically;
//!   lookups in flight keep the old mapping alive until they finish. A file that fails to open
//!   leaves the old database in place.
//! - Lookups decode only what `Geo` needs, into borrowed strings (no `names` maps).
//! - A lookup never panics whatever the file holds: decoding errors are "no data", and the
//!   decoder is additionally fenced with `catch_unwind` (the crate is fuzzed, but this is the
//!   request path).
//! - A missing, truncated or corrupt file is a `Config` error naming the file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use maxminddb::{Mmap, Reader};
use serde::Deserialize;

use super::client_ip::normalize;
use super::record::Geo;
use crate::error::{Error, Result};
use crate::memo::Memo;

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Named<'a> {
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize, Default)]
struct Coded<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// A number in whichever MaxMind type the file used (uint16/32/64, int32, float, double):
/// databases differ, and a field's encoding should not make a whole record unreadable.
#[derive(Clone, Copy, Default)]
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u128<E>(self, v: u128) -> std::result::Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_f32<E>(self, v: f32) -> std::result::Result<Num, E> {
                Ok(Num(f64::from(v)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
struct Location<'a> {
    latitude: Option<Num>,
    longitude: Option<Num>,
    #[serde(borrow)]
    time_zone: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Postal<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// The first element of an array (the rest are skipped, and nothing is collected).
struct First<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<First<T>, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// The fields of City, Country and ASN records that `Geo` carries.
#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow)]
    city: Option<Named<'a>>,
    #[serde(borrow)]
    continent: Option<Coded<'a>>,
    #[serde(borrow)]
    country: Option<Coded<'a>>,
    #[serde(borrow)]
    registered_country: Option<Coded<'a>>,
    #[serde(borrow)]
    location: Option<Location<'a>>,
    #[serde(borrow)]
    postal: Option<Postal<'a>>,
    #[serde(borrow)]
    subdivisions: Option<First<Coded<'a>>>,
    autonomous_system_number: Option<Num>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

impl Record<'_> {
    fn into_geo(self) -> Geo {
        let own = |s: Option<&str>| s.map(str::to_owned);
        let country = self
            .country
            .as_ref()
            .or(self.registered_country.as_ref())
            .and_then(|c| c.iso_code);
        Geo {
            country: own(country),
            continent: own(self.continent.as_ref().and_then(|c| c.code)),
            region: own(self
                .subdivisions
                .as_ref()
                .and_then(|s| s.0.as_ref())
                .and_then(|s| s.iso_code)),
            city: own(self.city.as_ref().and_then(|c| c.names.as_ref()).and_then(|n| n.en)),
            postal_code: own(self.postal.as_ref().and_then(|p| p.code)),
            latitude: self.location.as_ref().and_then(|l| l.latitude).map(|n| n.0),
            longitude: self.location.as_ref().and_then(|l| l.longitude).map(|n| n.0),
            timezone: own(self.location.as_ref().and_then(|l| l.time_zone)),
            asn: self.autonomous_system_number.map(|n| n.0 as u32),
            organization: own(self.autonomous_system_organization),
        }
    }
}

/// A generic MaxMind DB value, for `get()` (the full record, as the maxminddb Python package gives it).
#[derive(Debug, Clone, PartialEq)]
pub enum MmdbValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer up to 64 bits.
    Uint(u64),
    /// A 128-bit unsigned integer.
    Uint128(u128),
    /// A float or double.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An array.
    Array(Vec<MmdbValue>),
    /// A map, in file order.
    Map(Vec<(String, MmdbValue)>),
}

impl<'de> Deserialize<'de> for MmdbValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MmdbValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a MaxMind DB value")
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::Uint(v))
            }
            fn visit_u128<E>(self, v: u128) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::Uint128(v))
            }
            fn visit_f32<E>(self, v: f32) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::Float(f64::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::String(v.to_owned()))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::String(v.to_owned()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<MmdbValue, E> {
                Ok(MmdbValue::Bytes(v.to_vec()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> std::result::Result<MmdbValue, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element()? {
                    out.push(v);
                }
                Ok(MmdbValue::Array(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<MmdbValue, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, MmdbValue>()? {
                    out.push((k, v));
                }
                Ok(MmdbValue::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A geo-IP database.
pub struct GeoDb {
    path: PathBuf,
    reader: ArcSwap<Reader<Mmap>>,
    /// Records already looked up, for the server (`lookup_shared`); bumped `generation` on
    /// reload makes them all stale.
    memo: Memo<IpAddr, Option<Arc<Geo>>>,
    generation: AtomicU64,
}

/// Client IPs whose record a database remembers (about 64 bytes each plus the record).
pub const GEO_MEMO_ENTRIES: usize = 16_384;

fn open(path: &Path) -> Result<Reader<Mmap>> {
    let shown = path.display();
    // SAFETY: `open_mmap` is unsafe because the mapped file must not change while mapped (in-place
    // writes would change bytes under running lookups; truncation can raise SIGBUS). edgecore's
    // contract, documented in the README, is that a database is replaced by renaming a new file
    // over it; `reload()` then maps the new file and the old mapping lives until its last lookup.
    let reader = catch_unwind(|| unsafe { Reader::open_mmap(path) })
        .map_err(|_| Error::config(format!("geo database {shown} is corrupt")))?
        .map_err(|e| Error::config(format!("cannot open geo database {shown}: {e}")))?;
    // Probe the search tree and the data section once, so truncation is caught at open time.
    let probe = catch_unwind(AssertUnwindSafe(|| {
        reader
            .lookup("1.1.1.1".parse().unwrap())
            .and_then(|r| r.decode::<MmdbValue>())
    }));
    match probe {
        Ok(Ok(_)) => Ok(reader),
        Ok(Err(e)) => Err(Error::config(format!("geo database {shown} is corrupt: {e}"))),
        Err(_) => Err(Error::config(format!("geo database {shown} is corrupt"))),
    }
}

impl GeoDb {
    /// Opens (memory-maps) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let reader = open(&path)?;
        Ok(GeoDb {
            path,
            reader: ArcSwap::from_pointee(reader),
            memo: Memo::new(GEO_MEMO_ENTRIES),
            generation: AtomicU64::new(0),
        })
    }

    /// The file this database was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-opens the file and swaps it in atomically; on failure the old database stays.
    pub fn reload(&self) -> Result<()> {
        let reader = open(&self.path)?;
        self.reader.store(Arc::new(reader));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Metadata: database type, build epoch, IP version, languages, description (en).
    pub fn metadata(&self) -> BTreeMap<&'static str, String> {
        let r = self.reader.load();
        let m = r.metadata();
        let mut out = BTreeMap::new();
        out.insert("database_type", m.database_type.clone());
        out.insert("build_epoch", m.build_epoch.to_string());
        out.insert("ip_version", m.ip_version.to_string());
        out.insert("node_count", m.node_count.to_string());
        out.insert("languages", m.languages.join(","));
        out.insert("description", m.description.get("en").cloned().unwrap_or_default());
        out
    }

    /// Geo data for `ip`, or None when the database has no record (or an unreadable one).
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        lookup_in(&self.reader.load(), ip)
    }

    /// `lookup`, remembered: the same client IP on the next request costs one hash and one
    /// probe instead of a tree walk and a record decode. A `reload` forgets everything.
    pub fn lookup_shared(&self, ip: IpAddr) -> Option<Arc<Geo>> {
        // Read before the lookup: a reload meanwhile leaves this entry stale, never wrong.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(hit) = self.memo.get(&ip, generation) {
            return hit;
        }
        let found = self.lookup(ip).map(Arc::new);
        self.memo.insert(ip, generation, found.clone());
        found
    }

    /// The full record for `ip`, or None.
    pub fn get(&self, ip: IpAddr) -> Option<MmdbValue> {
        self.get_as::<MmdbValue>(ip)
    }

    /// The record for `ip` decoded as `T` (any owned `Deserialize` type), or None. Adapters use it
    /// to build their own values directly, without an intermediate tree.
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, ip: IpAddr) -> Option<T> {
        get_in(&self.reader.load(), ip)
    }
}

/// What [`GeoDb::lookup`] does, on any reader (a mapped file, or bytes in memory as the fuzz
/// target uses): `Geo` for `ip`, or None; never panics whatever the database holds.
pub fn lookup_in<S: AsRef<[u8]>>(reader: &Reader<S>, ip: IpAddr) -> Option<Geo> {
    let ip = normalize(ip);
    catch_unwind(AssertUnwindSafe(|| {
        reader
            .lookup(ip)
            .and_then(|res| res.decode::<Record<'_>>())
            .ok()
            .flatten()
            .map(Record::into_geo)
    }))
    .ok()
    .flatten()
}

/// What [`GeoDb::get_as`] does, on any reader.
pub fn get_in<S: AsRef<[u8]>, T: serde::de::DeserializeOwned>(reader: &Reader<S>, ip: IpAddr) -> Option<T> {
    catch_unwind(AssertUnwindSafe(|| {
        reader.lookup(ip).and_then(|res| res.decode::<T>()).ok().flatten()
    }))
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_garbage_files_name_the_file() {
        let e = GeoDb::open("/nonexistent/x.mmdb").err().unwrap();
        assert!(e.context.contains("/nonexistent/x.mmdb"), "{e}");
        let dir = std::env::temp_dir().join(format!("edgecore-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("garbage.mmdb");
        std::fs::write(&f, b"this is not a maxmind database at all").unwrap();
        let e = GeoDb::open(&f).err().unwrap();
        assert!(e.context.contains("garbage.mmdb"), "{e}");
    }
}
