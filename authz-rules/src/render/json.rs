//! JSON for other tools: the origin, the PBCs, and one entry per rule in
//! matrix order (so consumers need not know the grid to read an edge).

use super::Grid;
use serde::Serialize;
use std::fmt;

#[derive(Serialize)]
struct Output<'a> {
    origin: &'a str,
    pbcs: Vec<Pbc<'a>>,
    edges: Vec<Edge<'a>>,
    limits: Vec<Limit<'a>>,
}

#[derive(Serialize)]
struct Limit<'a> {
    id: &'a str,
    scope: String,
    requests: u32,
    per_seconds: u64,
    burst: u32,
    line: usize,
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct Pbc<'a> {
    name: &'a str,
    description: Option<&'a str>,
    principals: Vec<&'a str>,
}

#[derive(Serialize)]
struct Edge<'a> {
    caller: String,
    target: &'a str,
    effect: crate::rules::Effect,
    methods: Vec<&'static str>,
    paths: Vec<&'a str>,
    conditions: Option<String>,
    rule: &'a str,
    line: usize,
    description: Option<&'a str>,
    cancelled_by: Option<&'a str>,
}

pub(super) fn write(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    let rules = g.rules;
    let doc = Output {
        origin: rules.origin(),
        pbcs: rules
            .pbcs()
            .iter()
            .map(|p| Pbc {
                name: &p.name,
                description: p.description.as_deref(),
                principals: p.principals.iter().map(|a| a.as_str()).collect(),
            })
            .collect(),
        edges: g
            .rule_rows()
            .map(|(edge, r)| Edge {
                caller: g.caller_name(&edge.caller),
                target: g.target_name(edge.target),
                effect: r.rule.effect,
                methods: r.rule.methods.names(),
                paths: super::paths_of(r.rule),
                conditions: (!r.rule.conditions.is_empty()).then(|| r.rule.conditions.to_string()),
                rule: &r.rule.id,
                line: r.rule.line,
                description: r.rule.description.as_deref(),
                cancelled_by: r.cancelled_by.map(|d| &*d.id),
            })
            .collect(),
        limits: rules
            .limits()
            .iter()
            .map(|l| Limit {
                id: &l.id,
                scope: rules.limit_scope_name(&l.scope),
                requests: l.requests,
                per_seconds: l.per.as_secs(),
                burst: l.burst,
                line: l.line,
                description: l.description.as_deref(),
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|_| fmt::Error)?;
    out.push_str(&text);
    out.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::super::tests::small;
    use super::super::{Format, render};
    use serde_json::{Value, json};

    #[test]
    fn document_shape() {
        let out = render(&small(), Format::Json);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["origin"], "t.toml");
        assert_eq!(
            v["pbcs"][0],
            json!({
                "name": "web",
                "description": "Front <script>alert(1)</script> | \"end\"",
                "principals": ["arn:aws:iam::111122223333:role/web"],
            })
        );
        assert_eq!(v["pbcs"][1]["description"], Value::Null);
        let edges = v["edges"].as_array().unwrap();
        let ids: Vec<&str> = edges.iter().map(|e| e["rule"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            ["web-reads-api", "web-admin", "ops-writes", "no-admin"]
        );
        assert_eq!(
            edges[0],
            json!({
                "caller": "web",
                "target": "api",
                "effect": "allow",
                "methods": ["GET", "HEAD"],
                "paths": ["/items/**", "/tags"],
                "conditions": null,
                "rule": "web-reads-api",
                "line": 11,
                "description": null,
                "cancelled_by": null,
            })
        );
        assert_eq!(edges[1]["cancelled_by"], "no-admin");
        assert_eq!(edges[2]["caller"], "arn:aws:iam::111122223333:role/ops-*");
        assert_eq!(edges[2]["conditions"], "source in 10.0.0.0/8");
        assert_eq!(edges[3]["caller"], "*");
        assert_eq!(edges[3]["target"], "*");
        assert_eq!(edges[3]["effect"], "deny");
        assert_eq!(edges[3]["methods"], json!(["*"]));
        // Keys keep the documented order, for readable diffs.
        let first_edge = out.split("\"edges\"").nth(1).unwrap();
        let positions: Vec<usize> = [
            "caller",
            "target",
            "effect",
            "methods",
            "paths",
            "conditions",
            "rule",
            "line",
            "description",
            "cancelled_by",
        ]
        .iter()
        .map(|k| first_edge.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(positions.is_sorted(), "{positions:?}");
    }
}
