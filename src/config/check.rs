//! Key-by-key type checking of a parsed TOML document, so that *every* unknown key and wrong type is
//! reported, not just the first one serde meets.
//!
//! serde stops at the first error. Here each key of a table is deserialized on its own, as a one-key
//! table, into the section's raw type (whose fields are all optional): each key then fails or passes
//! independently, with its own span. The checkers return the value with the bad keys removed, so the
//! meaning of the good ones can still be validated in the same run.

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};

use super::error::Collector;

/// A TOML value with its place in the file.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// Checks every key of a table value against `T`; returns the table without the keys that failed.
pub fn table<'i, T: DeserializeOwned>(
    value: &Value<'i>,
    path: &str,
    out: &mut Collector<'_>,
) -> Option<Value<'i>> {
    let Some(table) = value.get_ref().as_table() else {
        out.push(
            Some(value.span()),
            path,
            format!("expected a table, found {}", value.get_ref().type_str()),
        );
        return None;
    };
    let mut good = DeTable::new();
    for (key, item) in table.iter() {
        let mut single = DeTable::new();
        single.insert(key.clone(), item.clone());
        let spanned = Spanned::new(value.span(), DeValue::Table(single));
        match T::deserialize(ValueDeserializer::from(spanned)) {
            Ok(_) => {
                good.insert(key.clone(), item.clone());
            }
            Err(e) => {
                let span = e
                    .span()
                    .filter(|s| *s != value.span())
                    .unwrap_or(key.span());
                out.push(Some(span), join(path, key.get_ref()), clean(e.message()));
            }
        }
    }
    Some(Spanned::new(value.span(), DeValue::Table(good)))
}

/// Checks every element of an array of tables (`[[subscribe]]`) against `T`; returns the good parts.
pub fn array_of_tables<'i, T: DeserializeOwned>(
    value: &Value<'i>,
    path: &str,
    out: &mut Collector<'_>,
) -> Option<Value<'i>> {
    let Some(items) = value.get_ref().as_array() else {
        out.push(
            Some(value.span()),
            path,
            format!(
                "expected an array of tables ([[{path}]]), found {}",
                value.get_ref().type_str()
            ),
        );
        return None;
    };
    let mut good = DeArray::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(item) = table::<T>(item, &format!("{path}[{}]", i + 1), out) {
            good.push(item);
        }
    }
    Some(Spanned::new(value.span(), DeValue::Array(good)))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// serde's messages can end in a newline and say "field" where a TOML user thinks "key".
fn clean(message: &str) -> String {
    message.trim().replace("unknown field", "unknown key")
}
