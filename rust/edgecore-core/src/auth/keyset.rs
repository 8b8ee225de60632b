//! A set of verification keys, indexed by `kid` (RFC 7517 JWK Sets, or one key on its own).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::keys::Key;
use crate::error::{Error, ErrorKind, Result};

/// A set of keys, indexed by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<Key>>,
    by_kid: HashMap<String, usize>,
    /// One key given on its own (not a JWK Set): used whatever `kid` the token names.
    single: bool,
}

impl KeySet {
    /// A set from keys; a repeated `kid` is a configuration error.
    pub fn new(keys: Vec<Key>) -> Result<KeySet> {
        let mut set = KeySet::default();
        for k in keys {
            if let Some(kid) = &k.kid {
                if set.by_kid.insert(kid.clone(), set.keys.len()).is_some() {
                    return Err(Error::config(format!("key set has two keys with kid {kid:?}")));
                }
            }
            set.keys.push(Arc::new(k));
        }
        Ok(set)
    }

    /// One key given on its own; tokens need no `kid`, and any `kid` they carry is ignored.
    pub fn single(key: Key) -> KeySet {
        KeySet {
            keys: vec![Arc::new(key)],
            by_kid: HashMap::new(),
            single: true,
        }
    }

    /// Parses a JWK Set (`{"keys": [...]}`). Keys that are not for signatures (`use` other than
    /// `sig`) or that use unsupported types are skipped, as RFC 7517 §5 asks; an empty result is
    /// an error.
    pub fn from_jwks(jwks: &Map<String, Value>) -> Result<KeySet> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::config("JWK Set must be an object with a \"keys\" array"))?;
        let mut parsed = Vec::new();
        let mut first_error = None;
        for k in keys {
            match k.as_object().map(Key::from_jwk) {
                Some(Ok(key)) => parsed.push(key),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {
                    first_error.get_or_insert(Error::config("JWK Set member is not an object"));
                }
            }
        }
        if parsed.is_empty() {
            return Err(first_error.unwrap_or_else(|| Error::config("JWK Set has no keys")));
        }
        Self::new(parsed)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Iterates the keys.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().map(|k| &**k)
    }

    pub(super) fn select(&self, kid: Option<&str>) -> Result<&Key> {
        if self.single {
            return Ok(&self.keys[0]);
        }
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .map(|&i| &*self.keys[i])
                .ok_or_else(|| Error::downstream(ErrorKind::TokenKeyNotFound, format!("no key with kid {kid:?}"))),
            None if self.keys.len() == 1 => Ok(&self.keys[0]),
            None => Err(Error::downstream(
                ErrorKind::TokenKeyNotFound,
                format!("token has no kid and the key set has {} keys", self.keys.len()),
            )),
        }
    }
}
