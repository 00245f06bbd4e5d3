//! GitHub-flavoured Markdown: the grid, the legend, the PBCs and a `## Edges`
//! table, for design docs and pull requests.
//!
//! Names, methods and paths are code spans because paths like `/a/**` would
//! otherwise turn into emphasis; free text is backslash-escaped. In table
//! cells every `|` is escaped, code spans included (GFM splits cells first).

use super::{Grid, LEGEND, Mark, STAR_NOTE, cancelled_note, paths_of};
use std::fmt::{self, Write};

pub(super) fn write(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "# Allow matrix of {}", text(g.rules.origin()))?;
    writeln!(out)?;
    writeln!(out, "{}.", text(&g.summary()))?;
    writeln!(out)?;
    grid(out, g)?;
    writeln!(out)?;
    for (mark, meaning) in LEGEND {
        writeln!(out, "- {}: {}", code(mark), text(meaning))?;
    }
    writeln!(out)?;
    writeln!(out, "{}", text(STAR_NOTE))?;
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
    writeln!(out, "## Rate limits")?;
    writeln!(out)?;
    writeln!(
        out,
        "Calls are counted before the matrix decides, so denied calls count too."
    )?;
    writeln!(out)?;
    writeln!(out, "| limit | counts | rate | description |")?;
    writeln!(out, "| --- | --- | --- | --- |")?;
    for l in limits {
        writeln!(
            out,
            "| {} (line {}) | {} | {} | {} |",
            code(&l.id),
            l.line,
            text(&g.rules.limit_scope_name(&l.scope)),
            text(&l.to_string()),
            l.description.as_deref().map_or_else(String::new, text)
        )?;
    }
    Ok(())
}

fn grid(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    write!(out, "| caller \\\\ target |")?;
    for t in &g.targets {
        write!(out, " {} |", code(g.target_name(*t)))?;
    }
    writeln!(out)?;
    write!(out, "| --- |")?;
    for _ in &g.targets {
        write!(out, " :-: |")?;
    }
    writeln!(out)?;
    for (row, caller) in g.callers.iter().enumerate() {
        write!(out, "| {} |", code(&g.caller_name(caller)))?;
        for col in 0..g.targets.len() {
            match g.cell(row, col) {
                Some((_, e)) => write!(out, " {} |", code(&Mark::of(e).to_string()))?,
                None => write!(out, " . |")?,
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

fn pbcs(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "## PBCs")?;
    writeln!(out)?;
    if g.rules.pbcs().is_empty() {
        writeln!(out, "None declared.")?;
        return Ok(());
    }
    writeln!(out, "| PBC | description | principals |")?;
    writeln!(out, "| --- | --- | --- |")?;
    for p in g.rules.pbcs() {
        let principals: Vec<String> = p.principals.iter().map(|a| code(a.as_str())).collect();
        writeln!(
            out,
            "| {} | {} | {} |",
            code(&p.name),
            p.description.as_deref().map_or_else(String::new, text),
            if principals.is_empty() {
                "none".to_string()
            } else {
                principals.join("<br>")
            }
        )?;
    }
    Ok(())
}

fn edge_list(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "## Edges")?;
    writeln!(out)?;
    if g.edges.is_empty() {
        writeln!(out, "None: every request is denied.")?;
        return Ok(());
    }
    writeln!(
        out,
        "| caller | target | effect | methods | paths | conditions | rule |"
    )?;
    writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |")?;
    for (edge, r) in g.rule_rows() {
        let rule = r.rule;
        let paths: Vec<String> = paths_of(rule).into_iter().map(code).collect();
        let conditions = if rule.conditions.is_empty() {
            "none".to_string()
        } else {
            text(&rule.conditions.to_string())
        };
        let mut rule_cell = format!("{} (line {})", code(&rule.id), rule.line);
        if let Some(deny) = r.cancelled_by {
            write!(rule_cell, "; **{}**", text(&cancelled_note(deny)))?;
        }
        if let Some(d) = &rule.description {
            write!(rule_cell, ": {}", text(d))?;
        }
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            code(&g.caller_name(&edge.caller)),
            code(g.target_name(edge.target)),
            rule.effect,
            code(&rule.methods.to_string()),
            paths.join(", "),
            conditions,
            rule_cell
        )?;
    }
    Ok(())
}

/// Free text for a table cell or a line: Markdown punctuation and `|`
/// backslash-escaped, line breaks (which would end a table row) as spaces.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '&' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A code span that survives any content: the fence is one backtick longer
/// than the longest run inside, and `|` is escaped for table cells.
fn code(s: &str) -> String {
    let body: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // A space keeps a backtick at either end from joining the fence.
    let pad = if body.starts_with('`') || body.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{body}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::super::tests::small;
    use super::super::{Format, render};
    use super::*;

    #[test]
    fn grid_and_edges_tables() {
        let out = render(&small(), Format::Markdown);
        assert!(out.starts_with("# Allow matrix of t.toml\n"), "{out}");
        assert!(out.contains(
            "| caller \\\\ target | `web` | `api` | `*` |\n\
             | --- | :-: | :-: | :-: |\n\
             | `web` | . | `A!` | . |\n"
        ));
        assert!(out.contains("| `*` | . | . | `D` |\n"));
        assert!(out.contains(
            "## Edges\n\n| caller | target | effect | methods | paths | conditions | rule |\n"
        ));
        assert!(out.contains(
            "| `web` | `api` | allow | `GET,HEAD` | `/items/**`, `/tags` | none | \
             `web-reads-api` (line 11) |\n"
        ));
        assert!(out.contains(
            "| `arn:aws:iam::111122223333:role/ops-*` | `api` | allow | `PUT` | `/items/{id}` \
             | source in 10.0.0.0/8 | `ops-writes` (line 25) |\n"
        ));
        assert!(out.contains("**never takes effect: deny no-admin (line 33) covers all of it**"));
        // The description's `|` and markup cannot break the PBC table.
        assert!(out.contains(
            "| `web` | Front \\<script\\>alert(1)\\</script\\> \\| \"end\" | \
             `arn:aws:iam::111122223333:role/web` |\n"
        ));
        // Every table row has the same number of unescaped pipes as its header.
        for line in out.lines().filter(|l| l.starts_with('|')) {
            let cells = line.replace("\\|", "").matches('|').count();
            assert!(cells == 5 || cells == 4 || cells == 8, "{line}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(text("a|b_c*d\ne"), "a\\|b\\_c\\*d e");
        assert_eq!(code("/a/**"), "`/a/**`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
    }
}
