//! The rules file as written: TOML shapes with source spans. Validation into
//! the model happens in `rules.rs`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub pbc: Vec<Spanned<RawPbc>>,
    #[serde(default)]
    pub allow: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub deny: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub limit: Vec<Spanned<RawLimit>>,
}

/// `[[pbc]]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPbc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub principals: Vec<Spanned<String>>,
}

/// `[[allow]]` and `[[deny]]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub caller: Spanned<String>,
    pub target: Spanned<String>,
    pub methods: Spanned<Vec<Spanned<String>>>,
    pub paths: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub source_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub not_source_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub principal_tags: Option<Spanned<BTreeMap<String, Spanned<OneOrMany>>>>,
    #[serde(default)]
    pub time: Option<Spanned<RawTime>>,
}

/// `[[limit]]`. Everything but `id` is optional here so that every missing
/// or conflicting key is reported at once (by `limit.rs`), not only the first.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub caller: Option<Spanned<String>>,
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    #[serde(default)]
    pub failed_auth_per_source_ip: Option<Spanned<bool>>,
    #[serde(default)]
    pub requests: Option<Spanned<i64>>,
    #[serde(default)]
    pub per: Option<Spanned<String>>,
    #[serde(default)]
    pub burst: Option<Spanned<i64>>,
}

/// `time = { ... }`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTime {
    #[serde(default)]
    pub not_before: Option<Spanned<String>>,
    #[serde(default)]
    pub not_after: Option<Spanned<String>>,
    #[serde(default)]
    pub days: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub hours: Option<Spanned<String>>,
}

/// A string or a list of strings.
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    out.push(v);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}
