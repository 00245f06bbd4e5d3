//! The terminal table: grid, legend, edge list. Plain text, no colours, so it
//! reads the same in a pager, a log or a code review.

use super::{Grid, LEGEND, Mark, STAR_NOTE, cancelled_note, paths_of};
use std::fmt::{self, Write};

/// Gap between columns.
const GAP: &str = "  ";

pub(super) fn write(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "Allow matrix of {}", plain(g.rules.origin()))?;
    writeln!(out, "{}", g.summary())?;
    writeln!(out)?;
    grid(out, g)?;
    writeln!(out)?;
    writeln!(out, "Legend")?;
    let width = LEGEND.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    for (mark, meaning) in LEGEND {
        writeln!(out, "  {mark:<width$}  {meaning}")?;
    }
    for line in wrap(STAR_NOTE, 88) {
        writeln!(out, "  {line}")?;
    }
    writeln!(out)?;
    pbcs(out, g)?;
    writeln!(out)?;
    edge_list(out, g)?;
    limit_list(out, g)
}

/// The rate limits, when the file has any.
fn limit_list(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    let limits = g.rules.limits();
    if limits.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "Rate limits (calls are counted before the matrix decides)"
    )?;
    let id_width = limits
        .iter()
        .map(|l| plain(&l.id).chars().count())
        .max()
        .unwrap_or(0);
    let rates: Vec<String> = limits.iter().map(ToString::to_string).collect();
    let rate_width = rates.iter().map(String::len).max().unwrap_or(0);
    let indent = " ".repeat(2 + id_width + GAP.len());
    for (l, rate) in limits.iter().zip(&rates) {
        writeln!(
            out,
            "  {:<id_width$}{GAP}{rate:<rate_width$}{GAP}{} (line {})",
            plain(&l.id),
            plain(&g.rules.limit_scope_name(&l.scope)),
            l.line
        )?;
        if let Some(d) = &l.description {
            writeln!(out, "{indent}{}", prose(d))?;
        }
    }
    Ok(())
}

fn pbcs(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "PBCs")?;
    let pbcs = g.rules.pbcs();
    if pbcs.is_empty() {
        return writeln!(out, "  (none declared)");
    }
    let width = pbcs.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in pbcs {
        let line = match &p.description {
            Some(d) => format!("  {:<width$}  {}", plain(&p.name), prose(d)),
            None => format!("  {}", plain(&p.name)),
        };
        writeln!(out, "{line}")?;
        if p.principals.is_empty() {
            writeln!(out, "  {:<width$}  (no principals: never a caller)", "")?;
        }
    }
    Ok(())
}

fn grid(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    let mut header = vec!["caller \\ target".to_string()];
    header.extend(g.targets.iter().map(|t| plain(g.target_name(*t))));
    let mut lines = vec![header];
    for (row, caller) in g.callers.iter().enumerate() {
        let mut line = vec![plain(&g.caller_name(caller))];
        line.extend((0..g.targets.len()).map(|col| {
            g.cell(row, col)
                .map_or_else(|| ".".to_string(), |(_, e)| Mark::of(e).to_string())
        }));
        lines.push(line);
    }
    let columns = g.targets.len() + 1;
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &lines {
        let mut s = String::new();
        for (cell, width) in line.iter().zip(&widths) {
            write!(s, "{cell:<width$}{GAP}")?;
        }
        writeln!(out, "{}", s.trim_end())?;
    }
    Ok(())
}

fn edge_list(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "Edges")?;
    if g.edges.is_empty() {
        writeln!(out, "  (none: every request is denied)")?;
        return Ok(());
    }
    // One width per column for the whole list, so it reads as one table.
    let methods_width = g
        .rule_rows()
        .map(|(_, r)| r.rule.methods.to_string().len())
        .max()
        .unwrap_or(0);
    let paths_width = g
        .rule_rows()
        .map(|(_, r)| plain(&paths_of(r.rule).join(", ")).chars().count())
        .max()
        .unwrap_or(0);
    let indent = " ".repeat(2 + "allow".len() + GAP.len());
    for edge in &g.edges {
        writeln!(out)?;
        writeln!(
            out,
            "{} -> {}",
            plain(&g.caller_name(&edge.caller)),
            plain(g.target_name(edge.target))
        )?;
        for r in &edge.rules {
            let paths = plain(&paths_of(r.rule).join(", "));
            let rule = r.rule;
            writeln!(
                out,
                "  {:<5}{GAP}{:<methods_width$}{GAP}{paths:<paths_width$}{GAP}{} (line {})",
                rule.effect.to_string(),
                rule.methods.to_string(),
                plain(&rule.id),
                rule.line
            )?;
            if !rule.conditions.is_empty() {
                writeln!(
                    out,
                    "{indent}only if {}",
                    plain(&rule.conditions.to_string())
                )?;
            }
            if let Some(deny) = r.cancelled_by {
                writeln!(out, "{indent}! {}", plain(&cancelled_note(deny)))?;
            }
            if let Some(d) = &rule.description {
                writeln!(out, "{indent}{}", prose(d))?;
            }
        }
    }
    Ok(())
}

/// Splits prose into lines of at most `width` characters (longer words
/// stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Prose (descriptions) on one line: line breaks and tabs become spaces.
fn prose(s: &str) -> String {
    plain(&s.replace(['\r', '\n', '\t'], " "))
}

/// User text made safe for a terminal: control characters (which could move
/// the cursor or recolour the screen) and line breaks are shown escaped.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::super::tests::small;
    use super::super::{Format, render};
    use super::*;

    #[test]
    fn grid_legend_and_edges() {
        let out = render(&small(), Format::Table);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Allow matrix of t.toml");
        assert_eq!(
            lines[1],
            "2 PBCs, 4 rules (3 allow, 1 deny) on 3 caller-target pairs; \
             1 allow never takes effect (marked !)"
        );
        let grid: Vec<&str> = lines[3..8].to_vec();
        assert_eq!(
            grid,
            [
                "caller \\ target                       web  api  *",
                "web                                   .    A!   .",
                "api                                   .    .    .",
                "arn:aws:iam::111122223333:role/ops-*  .    A*   .",
                "*                                     .    .    D",
            ]
        );
        assert!(
            out.contains("\nPBCs\n  web  Front <script>alert(1)</script> | \"end\"\n  api\n\n")
        );
        let edges = out.split("\nEdges\n").nth(1).unwrap();
        assert_eq!(
            edges,
            "
web -> api
  allow  GET,HEAD  /items/**, /tags  web-reads-api (line 11)
  allow  POST      /admin/users      web-admin (line 18)
         ! never takes effect: deny no-admin (line 33) covers all of it

arn:aws:iam::111122223333:role/ops-* -> api
  allow  PUT       /items/{id}       ops-writes (line 25)
         only if source in 10.0.0.0/8

* -> *
  deny   *         /admin/**         no-admin (line 33)
         Admin is <b>never</b> reachable
"
        );
        assert!(out.contains("Rules in the * row apply to every caller"));
        for line in out.lines() {
            assert_eq!(line, line.trim_end(), "trailing space in {line:?}");
        }
    }

    #[test]
    fn wraps_prose() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("toolongword x", 4), ["toolongword", "x"]);
        assert!(wrap("", 4).is_empty());
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(plain("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(plain("ok é"), "ok é");
        assert_eq!(prose("two\r\nlines\u{7}"), "two  lines\\u{7}");
    }
}
