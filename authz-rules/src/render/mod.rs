//! Renderings of the allow matrix: who may call whom, with the methods and
//! paths of every edge (`authz-rules matrix --format ...`).
//!
//! Wildcards stay wildcards: a rule whose caller or target is `*` is shown in
//! its own `*` row or column instead of being copied into every cell, so the
//! rendering reads like the file and a guard-rail deny is visibly one rule.
//! Rows are the PBCs in file order, then the role-ARN patterns rules name as
//! callers (in order of first use), then `*`; columns are the PBCs, then `*`.
//!
//! ```
//! use authz_rules::Rules;
//! use authz_rules::render::{Format, render};
//!
//! let rules = Rules::parse(r#"
//!     [[pbc]]
//!     name = "checkout"
//!     principals = ["arn:aws:iam::111122223333:role/checkout"]
//!
//!     [[pbc]]
//!     name = "catalogue"
//!
//!     [[allow]]
//!     id = "checkout-reads-catalogue"
//!     caller = "checkout"
//!     target = "catalogue"
//!     methods = ["GET"]
//!     paths = ["/products/**"]
//! "#, "rules.toml").unwrap();
//!
//! let format: Format = "markdown".parse().unwrap();
//! let page = render(&rules, format);
//! assert!(page.contains("checkout-reads-catalogue"));
//! ```

mod dot;
mod html;
mod json;
mod markdown;
mod text;

use crate::lint::covers;
use crate::rules::{CallerSpec, Effect, Rule, Rules, TargetSpec};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Output formats of `authz-rules matrix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A caller x target grid, a legend and the edge list, as plain text for
    /// a terminal.
    Table,
    /// The grid and the edge list as GitHub-flavoured Markdown tables.
    Markdown,
    /// One self-contained HTML page (inline CSS, no scripts).
    Html,
    /// A Graphviz `digraph`: one node per PBC, one edge per rule.
    Dot,
    /// Pretty-printed JSON: origin, PBCs and one entry per rule.
    Json,
}

impl Format {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Format; 5] = [
        Format::Table,
        Format::Markdown,
        Format::Html,
        Format::Dot,
        Format::Json,
    ];

    /// The name `FromStr` accepts (`table`, `markdown`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Dot => "dot",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown matrix format `{s}`; choose one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// Renders the matrix of `rules` in `format`.
///
/// The output is deterministic (file order throughout) and ends with a
/// newline, so write it out with `print!`, not `println!`.
pub fn render(rules: &Rules, format: Format) -> String {
    let grid = Grid::new(rules);
    let mut out = String::new();
    let written = match format {
        Format::Table => text::write(&mut out, &grid),
        Format::Markdown => markdown::write(&mut out, &grid),
        Format::Html => html::write(&mut out, &grid),
        Format::Dot => dot::write(&mut out, &grid),
        Format::Json => json::write(&mut out, &grid),
    };
    // Formatting into a String only fails if a Display impl does; what was
    // written so far is still the most useful thing to return.
    let _ = written;
    out
}

/// One (caller, target) pair that has rules, with those rules.
#[derive(Clone, Debug)]
pub struct Edge<'r> {
    /// The caller as the rules name it: a PBC, a role-ARN pattern or `*`.
    pub caller: CallerSpec,
    /// The target as the rules name it: a PBC or `*`.
    pub target: TargetSpec,
    /// The rules on this pair, allows and denies, in file order.
    pub rules: Vec<EdgeRule<'r>>,
}

/// One rule on an [`Edge`].
#[derive(Clone, Copy, Debug)]
pub struct EdgeRule<'r> {
    /// The rule.
    pub rule: &'r Rule,
    /// For an allow: the first unconditional deny (in file order) that covers
    /// every request the allow covers, so the allow never takes effect.
    pub cancelled_by: Option<&'r Rule>,
}

/// Every (caller, target) pair that has rules, in matrix order: rows (PBCs in
/// file order, then role-ARN callers by first use, then `*`), and within a row
/// the columns (PBCs in file order, then `*`). `*` is never expanded.
pub fn edges(rules: &Rules) -> Vec<Edge<'_>> {
    Grid::new(rules).edges
}

/// The layout every format shares: rows, columns and the edges in the cells.
struct Grid<'r> {
    rules: &'r Rules,
    callers: Vec<CallerSpec>,
    targets: Vec<TargetSpec>,
    edges: Vec<Edge<'r>>,
    /// (row, column) -> index into `edges`.
    cells: BTreeMap<(usize, usize), usize>,
}

impl<'r> Grid<'r> {
    fn new(rules: &'r Rules) -> Self {
        let pbcs = rules.pbcs().len();
        let mut callers: Vec<CallerSpec> = (0..pbcs).map(CallerSpec::Pbc).collect();
        for rule in rules.rules() {
            if matches!(rule.caller, CallerSpec::Principal(_)) && !callers.contains(&rule.caller) {
                callers.push(rule.caller.clone());
            }
        }
        callers.push(CallerSpec::Any);
        let mut targets: Vec<TargetSpec> = (0..pbcs).map(TargetSpec::Pbc).collect();
        targets.push(TargetSpec::Any);

        // A conditional deny may not hold, so only an unconditional one
        // cancels an allow.
        let denies: Vec<&Rule> = rules
            .rules()
            .iter()
            .filter(|r| r.effect == Effect::Deny && r.conditions.is_empty())
            .collect();
        let mut by_cell: BTreeMap<(usize, usize), Vec<EdgeRule<'r>>> = BTreeMap::new();
        for rule in rules.rules() {
            let row = callers.iter().position(|c| *c == rule.caller);
            let col = targets.iter().position(|t| *t == rule.target);
            // Validation guarantees both; a rule that fits nowhere is left out
            // rather than shown in the wrong place.
            let (Some(row), Some(col)) = (row, col) else {
                continue;
            };
            by_cell.entry((row, col)).or_default().push(EdgeRule {
                rule,
                cancelled_by: cancelled_by(rules, &denies, rule),
            });
        }
        let mut edges = Vec::with_capacity(by_cell.len());
        let mut cells = BTreeMap::new();
        for ((row, col), on_edge) in by_cell {
            let (Some(caller), Some(target)) = (callers.get(row), targets.get(col)) else {
                continue;
            };
            cells.insert((row, col), edges.len());
            edges.push(Edge {
                caller: caller.clone(),
                target: *target,
                rules: on_edge,
            });
        }
        Grid {
            rules,
            callers,
            targets,
            edges,
            cells,
        }
    }

    fn cell(&self, row: usize, col: usize) -> Option<(usize, &Edge<'r>)> {
        let i = *self.cells.get(&(row, col))?;
        Some((i, self.edges.get(i)?))
    }

    fn caller_name(&self, caller: &CallerSpec) -> String {
        self.rules.caller_name(caller)
    }

    fn target_name(&self, target: TargetSpec) -> &str {
        self.rules.target_name(target)
    }

    /// The PBC description of a row or column, if it is a described PBC.
    fn description(&self, pbc: Option<usize>) -> Option<&str> {
        pbc.and_then(|i| self.rules.pbcs().get(i))
            .and_then(|p| p.description.as_deref())
    }

    /// Every rule with its edge, in matrix order (the flat edge lists).
    fn rule_rows(&self) -> impl Iterator<Item = (&Edge<'r>, &EdgeRule<'r>)> {
        self.edges
            .iter()
            .flat_map(|e| e.rules.iter().map(move |r| (e, r)))
    }

    fn summary(&self) -> String {
        let all = self.rules.rules();
        let allows = all.iter().filter(|r| r.effect == Effect::Allow).count();
        let cancelled = self
            .rule_rows()
            .filter(|(_, r)| r.cancelled_by.is_some())
            .count();
        let mut s = format!(
            "{}, {} ({} allow, {} deny) on {}",
            count(self.rules.pbcs().len(), "PBC", "PBCs"),
            count(all.len(), "rule", "rules"),
            allows,
            all.len() - allows,
            count(
                self.edges.len(),
                "caller-target pair",
                "caller-target pairs"
            ),
        );
        if cancelled > 0 {
            s.push_str(&format!(
                "; {} never {} effect (marked !)",
                count(cancelled, "allow", "allows"),
                if cancelled == 1 { "takes" } else { "take" }
            ));
        }
        s
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn cancelled_by<'r>(rules: &Rules, denies: &[&'r Rule], allow: &Rule) -> Option<&'r Rule> {
    if allow.effect != Effect::Allow {
        return None;
    }
    denies
        .iter()
        .find(|deny| covers(rules.pbcs(), deny, allow))
        .copied()
}

/// What a cell holds, summarised for its compact mark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    allows: usize,
    conditional_allows: usize,
    cancelled_allows: usize,
    denies: usize,
    conditional_denies: usize,
}

impl Mark {
    fn of(edge: &Edge<'_>) -> Mark {
        let mut m = Mark::default();
        for r in &edge.rules {
            let conditional = !r.rule.conditions.is_empty();
            match r.rule.effect {
                Effect::Allow => {
                    m.allows += 1;
                    m.conditional_allows += usize::from(conditional);
                    m.cancelled_allows += usize::from(r.cancelled_by.is_some());
                }
                Effect::Deny => {
                    m.denies += 1;
                    m.conditional_denies += usize::from(conditional);
                }
            }
        }
        m
    }

    /// The allow half (`A`, `A*`, `A!`, `A*!`), if there are allows.
    fn allow_text(self) -> Option<String> {
        (self.allows > 0).then(|| {
            let mut s = String::from("A");
            if self.conditional_allows > 0 {
                s.push('*');
            }
            if self.cancelled_allows > 0 {
                s.push('!');
            }
            s
        })
    }

    /// The deny half (`D`, `D*`), if there are denies.
    fn deny_text(self) -> Option<String> {
        (self.denies > 0).then(|| {
            if self.conditional_denies > 0 {
                "D*".to_string()
            } else {
                "D".to_string()
            }
        })
    }

    /// Which colour the allow half gets: every allow cancelled, some
    /// conditional, or plain.
    fn allow_class(self) -> &'static str {
        if self.cancelled_allows == self.allows {
            "cancelled"
        } else if self.conditional_allows > 0 {
            "cond"
        } else {
            "allow"
        }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [self.allow_text(), self.deny_text()]
            .into_iter()
            .flatten()
            .collect();
        if parts.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&parts.join("/"))
        }
    }
}

/// The marks and what they mean, for every format's legend.
const LEGEND: [(&str, &str); 7] = [
    ("A", "allow"),
    (
        "A*",
        "allow; some of the allows apply only under conditions",
    ),
    (
        "!",
        "after A: an allow never takes effect, because an unconditional deny covers all of it",
    ),
    ("D", "deny (beats any allow)"),
    ("D*", "deny; some of the denies apply only under conditions"),
    (
        "A/D",
        "both allows and denies on the pair (see the edge list)",
    ),
    (".", "no rule: default deny"),
];

/// Why the `*` row and column matter to every cell.
const STAR_NOTE: &str = "Rules in the * row apply to every caller, rules in the * column to \
                         every target, on top of each cell's own rules: a deny there applies \
                         everywhere it reaches.";

/// The PBC index of a row or column, for descriptions.
fn caller_pbc(c: &CallerSpec) -> Option<usize> {
    match c {
        CallerSpec::Pbc(i) => Some(*i),
        _ => None,
    }
}

fn target_pbc(t: TargetSpec) -> Option<usize> {
    match t {
        TargetSpec::Pbc(i) => Some(i),
        TargetSpec::Any => None,
    }
}

/// What a cancelled allow's note says.
fn cancelled_note(deny: &Rule) -> String {
    format!(
        "never takes effect: deny {} (line {}) covers all of it",
        deny.id, deny.line
    )
}

fn paths_of(rule: &Rule) -> Vec<&str> {
    rule.paths.iter().map(|p| p.as_str()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    /// A small file with every feature the renderings show: a described PBC
    /// (with markup in the description), a role-ARN caller, a conditional
    /// allow, an allow a `*` deny cancels and a `*` deny with a description.
    pub(crate) const SMALL: &str = r#"
[[pbc]]
name = "web"
description = "Front <script>alert(1)</script> | \"end\""
principals = ["arn:aws:iam::111122223333:role/web"]

[[pbc]]
name = "api"
principals = ["arn:aws:iam::111122223333:role/api"]

[[allow]]
id = "web-reads-api"
caller = "web"
target = "api"
methods = ["GET", "HEAD"]
paths = ["/items/**", "/tags"]

[[allow]]
id = "web-admin"
caller = "web"
target = "api"
methods = ["POST"]
paths = ["/admin/users"]

[[allow]]
id = "ops-writes"
caller = "arn:aws:iam::111122223333:role/ops-*"
target = "api"
methods = ["PUT"]
paths = ["/items/{id}"]
source_cidrs = ["10.0.0.0/8"]

[[deny]]
id = "no-admin"
caller = "*"
target = "*"
methods = ["*"]
paths = ["/admin/**"]
description = "Admin is <b>never</b> reachable"
"#;

    pub(crate) fn small() -> Rules {
        Rules::parse(SMALL, "t.toml").unwrap()
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
        }
        let err = "svg".parse::<Format>().unwrap_err();
        assert!(err.contains("`svg`"), "{err}");
        assert!(err.contains("table, markdown, html, dot, json"), "{err}");
    }

    #[test]
    fn edges_in_matrix_order_with_wildcards_kept() {
        let rules = small();
        let edges = edges(&rules);
        let names: Vec<(String, &str, usize)> = edges
            .iter()
            .map(|e| {
                (
                    rules.caller_name(&e.caller),
                    rules.target_name(e.target),
                    e.rules.len(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("web".to_string(), "api", 2),
                ("arn:aws:iam::111122223333:role/ops-*".to_string(), "api", 1),
                ("*".to_string(), "*", 1),
            ]
        );
        let web = &edges[0].rules;
        assert_eq!(&*web[0].rule.id, "web-reads-api");
        assert!(web[0].cancelled_by.is_none());
        assert_eq!(&*web[1].rule.id, "web-admin");
        assert_eq!(&*web[1].cancelled_by.unwrap().id, "no-admin");
    }

    #[test]
    fn marks() {
        let rules = small();
        let edges = edges(&rules);
        let marks: Vec<String> = edges.iter().map(|e| Mark::of(e).to_string()).collect();
        assert_eq!(marks, ["A!", "A*", "D"]);
        assert_eq!(Mark::default().to_string(), ".");
        let both = Mark {
            allows: 2,
            conditional_allows: 1,
            cancelled_allows: 0,
            denies: 1,
            conditional_denies: 1,
        };
        assert_eq!(both.to_string(), "A*/D*");
        assert_eq!(both.allow_class(), "cond");
    }

    #[test]
    fn empty_rules_render_in_every_format() {
        let rules = Rules::parse("", "empty.toml").unwrap();
        for f in Format::ALL {
            let out = render(&rules, f);
            assert!(out.ends_with('\n'), "{f}: {out}");
        }
        assert!(edges(&rules).is_empty());
    }

    /// Names, ids, paths and descriptions with every character the formats
    /// treat specially.
    pub(crate) const HOSTILE: &str = r#"
[[pbc]]
name = "a.b_c-d"
description = """two
lines with "quotes", a back\\slash\\, <b>tags</b> & | pipes ` and \u001b[31m escapes\\"""
principals = ["arn:aws:iam::1:role/x\"y<z>|`"]

[[allow]]
id = "id\"with<quote>|pipe`tick\\"
caller = "arn:aws:iam::1:role/q\"uo\\te*"
target = "a.b_c-d"
methods = ["GET"]
paths = ["/a|b/<c>/`d`/\"e\"/**"]
principal_tags = { "te\"am" = ["x|y", "<z>"] }
description = "ends with a backslash \\"
"#;

    #[test]
    fn hostile_text_renders_in_every_format() {
        let rules = Rules::parse(HOSTILE, "dir/\"odd\" <name>.toml").unwrap();
        for f in Format::ALL {
            let out = render(&rules, f);
            assert!(out.ends_with('\n'), "{f}");
            assert!(!out.contains('\u{1b}'), "{f}: raw escape character");
        }
    }
}
