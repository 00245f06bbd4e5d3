//! A Graphviz `digraph` (`dot -Tsvg matrix.dot > matrix.svg`): one node per
//! PBC, extra nodes for `*` and role-ARN callers, one edge per rule.
//!
//! Every identifier and label is a quoted string built by [`quote`], so no
//! name, pattern or description can end a string or inject attributes.

use super::{Grid, cancelled_note, paths_of};
use crate::rules::{CallerSpec, Effect, TargetSpec};
use std::fmt::{self, Write};

const GREEN: &str = "#1a7f37";
const ORANGE: &str = "#d97706";
const RED: &str = "#cf222e";
const GRAY: &str = "#8c959f";

/// `*` is one node as a caller and another as a target, so the graph reads
/// left to right instead of looping back into itself.
const ANY_CALLER: &str = "any:caller";
const ANY_TARGET: &str = "any:target";

pub(super) fn write(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    let rules = g.rules;
    writeln!(out, "digraph {} {{", quote("authz-rules"))?;
    let label = format!(
        "Allow matrix of {}\n\
         green: allow; orange: allow under conditions; dashed red: deny;\n\
         dotted gray: an allow a deny cancels\n\
         A * caller or target stands for every one: its rules apply to every edge they reach",
        rules.origin(),
    );
    writeln!(
        out,
        "  graph [rankdir=LR, labelloc=t, fontname=\"Helvetica\", fontsize=12, \
         nodesep=0.4, ranksep=1.2, label={}];",
        quote(&label)
    )?;
    writeln!(
        out,
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f6f8fa\", \
         fontname=\"Helvetica\", fontsize=11];"
    )?;
    writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=9];")?;
    writeln!(out)?;
    for p in rules.pbcs() {
        let label = match &p.description {
            Some(d) => format!("{}\n{}", p.name, d),
            None => p.name.to_string(),
        };
        writeln!(
            out,
            "  {} [label={}];",
            quote(&pbc_id(&p.name)),
            quote(&label)
        )?;
    }
    for caller in &g.callers {
        if !g.edges.iter().any(|e| e.caller == *caller) {
            continue;
        }
        match caller {
            CallerSpec::Pbc(_) => {}
            CallerSpec::Principal(p) => writeln!(
                out,
                "  {} [label={}, tooltip={}, style=\"dashed\", shape=box];",
                quote(&caller_id(g, caller)),
                quote(&format!("{p}\n(role-ARN caller)")),
                quote(p.as_str())
            )?,
            CallerSpec::Any => writeln!(
                out,
                "  {} [label={}, shape=ellipse, style=\"dashed\"];",
                quote(ANY_CALLER),
                quote("*\nany caller")
            )?,
        }
    }
    if g.edges.iter().any(|e| e.target == TargetSpec::Any) {
        writeln!(
            out,
            "  {} [label={}, shape=ellipse, style=\"dashed\"];",
            quote(ANY_TARGET),
            quote("*\nany target")
        )?;
    }
    writeln!(out)?;
    for (edge, r) in g.rule_rows() {
        let rule = r.rule;
        let from = caller_id(g, &edge.caller);
        let to = match edge.target {
            TargetSpec::Any => ANY_TARGET.to_string(),
            TargetSpec::Pbc(_) => pbc_id(g.target_name(edge.target)),
        };
        let mut label = vec![rule.methods.to_string()];
        label.extend(paths_of(rule).into_iter().map(str::to_string));
        if !rule.conditions.is_empty() {
            label.push(format!("if {}", rule.conditions));
        }
        if let Some(deny) = r.cancelled_by {
            label.push(cancelled_note(deny));
        }
        let (color, style) = match (rule.effect, r.cancelled_by, rule.conditions.is_empty()) {
            (Effect::Deny, _, _) => (RED, "dashed"),
            (Effect::Allow, Some(_), _) => (GRAY, "dotted"),
            (Effect::Allow, None, false) => (ORANGE, "solid"),
            (Effect::Allow, None, true) => (GREEN, "solid"),
        };
        writeln!(
            out,
            "  {} -> {} [label={}, color={}, fontcolor={}, style={}, tooltip={}];",
            quote(&from),
            quote(&to),
            quote(&label.join("\n")),
            quote(color),
            quote(color),
            style,
            quote(&format!("{} {} (line {})", rule.effect, rule.id, rule.line))
        )?;
    }
    writeln!(out, "}}")
}

/// Node ids are made up rather than taken from ARN patterns, because
/// Graphviz shows a node's id as its tooltip and a pattern may need escapes.
fn caller_id(g: &Grid<'_>, caller: &CallerSpec) -> String {
    match caller {
        CallerSpec::Any => ANY_CALLER.to_string(),
        CallerSpec::Pbc(_) => pbc_id(&g.caller_name(caller)),
        CallerSpec::Principal(_) => {
            let row = g.callers.iter().position(|c| c == caller).unwrap_or(0);
            format!("role:{}", row.saturating_sub(g.rules.pbcs().len()) + 1)
        }
    }
}

/// PBC nodes are prefixed so a PBC can never share a node with `*` or an
/// ARN caller (PBC names cannot contain `:`).
fn pbc_id(name: &str) -> String {
    format!("pbc:{name}")
}

/// A DOT double-quoted string. Backslashes are doubled because Graphviz reads
/// `\n`, `\l`, `\N`... in labels as escapes; a line break becomes `\n` (a
/// centred line); other control characters, which DOT cannot carry, become
/// spaces.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::super::tests::small;
    use super::super::{Format, render};
    use super::*;

    #[test]
    fn nodes_and_edges() {
        let out = render(&small(), Format::Dot);
        assert!(out.starts_with("digraph \"authz-rules\" {\n"));
        assert!(out.ends_with("}\n"));
        assert!(out.contains(
            "  \"pbc:web\" [label=\"web\\nFront <script>alert(1)</script> | \\\"end\\\"\"];\n"
        ));
        assert!(out.contains("  \"pbc:api\" [label=\"api\"];\n"));
        assert!(out.contains(
            "  \"role:1\" [label=\"arn:aws:iam::111122223333:role/ops-*\\n(role-ARN caller)\", \
             tooltip=\"arn:aws:iam::111122223333:role/ops-*\""
        ));
        assert!(out.contains("  \"any:caller\" [label=\"*\\nany caller\""));
        assert!(out.contains("  \"any:target\" [label=\"*\\nany target\""));
        assert!(out.contains(
            "  \"pbc:web\" -> \"pbc:api\" [label=\"GET,HEAD\\n/items/**\\n/tags\", \
             color=\"#1a7f37\", fontcolor=\"#1a7f37\", style=solid, \
             tooltip=\"allow web-reads-api (line 11)\"];\n"
        ));
        assert!(out.contains(
            "[label=\"POST\\n/admin/users\\nnever takes effect: deny no-admin (line 33) \
             covers all of it\", color=\"#8c959f\""
        ));
        assert!(out.contains(
            "  \"role:1\" -> \"pbc:api\" \
             [label=\"PUT\\n/items/{id}\\nif source in 10.0.0.0/8\", color=\"#d97706\""
        ));
        assert!(out.contains(
            "  \"any:caller\" -> \"any:target\" [label=\"*\\n/admin/**\", color=\"#cf222e\", \
             fontcolor=\"#cf222e\", style=dashed"
        ));
        // Every line is a statement or a brace: quotes are balanced per line.
        for line in out.lines() {
            let unescaped = line.replace("\\\\", "").replace("\\\"", "");
            assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote("a\\"), "\"a\\\\\"");
        assert_eq!(quote("a\\N\r\nb\u{1}"), "\"a\\\\N\\nb \"");
    }
}
