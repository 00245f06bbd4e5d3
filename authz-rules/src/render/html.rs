//! One self-contained HTML page: inline CSS only, no scripts, no external
//! assets, so it can be mailed, attached to a ticket or opened from disk.
//! Every piece of text from the rules file goes through [`escape`].

use super::{
    Edge, Grid, LEGEND, Mark, STAR_NOTE, caller_pbc, cancelled_note, paths_of, target_pbc,
};
use crate::rules::Effect;
use std::fmt::{self, Write};

const STYLE: &str = "\
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem; color: #1f2328; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
table { border-collapse: collapse; margin: .75rem 0; }
th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
.grid td { text-align: center; min-width: 3rem; }
.grid td a { text-decoration: none; color: inherit; display: block; }
.grid th.row { white-space: nowrap; }
.m { display: inline-block; font-weight: 600; padding: 0 .3rem; border-radius: 3px; margin: 0 1px; font-family: ui-monospace, Menlo, Consolas, monospace; }
.allow { background: #c6efce; color: #0b5d1e; }
.cond { background: #ffe8a3; color: #7a4d00; }
.deny { background: #ffc7ce; color: #8e0b1b; }
.cancelled { background: #e4e7eb; color: #57606a; text-decoration: line-through; }
.none { color: #8c959f; }
td.allow, td.cond, td.deny, td.cancelled { text-decoration: none; }
.star { font-style: italic; }
.note { color: #57606a; }
.legend td:first-child { text-align: center; }
.edges code { white-space: nowrap; }
";

pub(super) fn write(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    let origin = escape(g.rules.origin());
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">")?;
    writeln!(out, "<head>")?;
    writeln!(out, "<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(out, "<title>Allow matrix of {origin}</title>")?;
    writeln!(out, "<style>\n{STYLE}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    writeln!(out, "<h1>Allow matrix of <code>{origin}</code></h1>")?;
    writeln!(out, "<p>{}.</p>", escape(&g.summary()))?;
    writeln!(out, "<h2>Matrix</h2>")?;
    writeln!(
        out,
        "<p>Rows are callers, columns are targets. Select a cell for its rules.</p>"
    )?;
    grid(out, g)?;
    legend(out)?;
    pbcs(out, g)?;
    edge_list(out, g)?;
    limit_list(out, g)?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

fn grid(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "<table class=\"grid\">")?;
    write!(out, "<thead><tr><th>caller \\ target</th>")?;
    for t in &g.targets {
        let name = g.target_name(*t);
        match g.description(target_pbc(*t)) {
            Some(d) => write!(
                out,
                "<th title=\"{}\"><code>{}</code></th>",
                escape(d),
                escape(name)
            )?,
            None if target_pbc(*t).is_none() => write!(
                out,
                "<th class=\"star\" title=\"any target\"><code>*</code></th>"
            )?,
            None => write!(out, "<th><code>{}</code></th>", escape(name))?,
        }
    }
    writeln!(out, "</tr></thead>")?;
    writeln!(out, "<tbody>")?;
    for (row, caller) in g.callers.iter().enumerate() {
        let name = g.caller_name(caller);
        let title = match (caller_pbc(caller), &name[..]) {
            (Some(i), _) => g.description(Some(i)).unwrap_or(""),
            (None, "*") => "any caller",
            (None, _) => "role-ARN pattern caller",
        };
        write!(
            out,
            "<tr><th class=\"row\" title=\"{}\"><code>{}</code></th>",
            escape(title),
            escape(&name)
        )?;
        for col in 0..g.targets.len() {
            match g.cell(row, col) {
                Some((i, e)) => cell(out, i, e)?,
                None => write!(out, "<td class=\"none\">.</td>")?,
            }
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")
}

fn cell(out: &mut String, index: usize, edge: &Edge<'_>) -> fmt::Result {
    let mark = Mark::of(edge);
    let ids: Vec<&str> = edge.rules.iter().map(|r| &*r.rule.id).collect();
    let class = if mark.allows > 0 {
        mark.allow_class()
    } else {
        "deny"
    };
    write!(
        out,
        "<td class=\"{class}\"><a href=\"#edge-{index}\" title=\"{}\">",
        escape(&ids.join(", "))
    )?;
    if let Some(a) = mark.allow_text() {
        write!(out, "<span class=\"m {}\">{}</span>", mark.allow_class(), a)?;
    }
    if let Some(d) = mark.deny_text() {
        write!(out, "<span class=\"m deny\">{d}</span>")?;
    }
    write!(out, "</a></td>")
}

fn legend(out: &mut String) -> fmt::Result {
    writeln!(out, "<table class=\"legend\">")?;
    for (mark, meaning) in LEGEND {
        let class = match mark {
            "A" => "allow",
            "A*" => "cond",
            "!" => "cancelled",
            "D" | "D*" => "deny",
            _ => "",
        };
        // A lone `!` would be struck through; show it on the mark it follows.
        let shown = if mark == "!" { "A!" } else { mark };
        writeln!(
            out,
            "<tr><td><span class=\"m {class}\">{}</span></td><td>{}</td></tr>",
            escape(shown),
            escape(meaning)
        )?;
    }
    writeln!(out, "</table>")?;
    writeln!(out, "<p class=\"note\">{}</p>", escape(STAR_NOTE))
}

fn pbcs(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "<h2>PBCs</h2>")?;
    if g.rules.pbcs().is_empty() {
        return writeln!(out, "<p>None declared.</p>");
    }
    writeln!(out, "<table>")?;
    writeln!(
        out,
        "<thead><tr><th>PBC</th><th>description</th><th>principals</th></tr></thead>"
    )?;
    writeln!(out, "<tbody>")?;
    for p in g.rules.pbcs() {
        let principals: Vec<String> = p
            .principals
            .iter()
            .map(|a| format!("<code>{}</code>", escape(a.as_str())))
            .collect();
        writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&p.name),
            p.description.as_deref().map_or_else(String::new, escape),
            if principals.is_empty() {
                "<span class=\"note\">none</span>".to_string()
            } else {
                principals.join("<br>")
            }
        )?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")
}

fn edge_list(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    writeln!(out, "<h2>Edges</h2>")?;
    if g.edges.is_empty() {
        return writeln!(out, "<p>None: every request is denied.</p>");
    }
    writeln!(out, "<table class=\"edges\">")?;
    writeln!(
        out,
        "<thead><tr><th>caller</th><th>target</th><th>effect</th><th>methods</th>\
         <th>paths</th><th>conditions</th><th>rule</th></tr></thead>"
    )?;
    writeln!(out, "<tbody>")?;
    for (index, edge) in g.edges.iter().enumerate() {
        for (n, r) in edge.rules.iter().enumerate() {
            let rule = r.rule;
            let anchor = if n == 0 {
                format!(" id=\"edge-{index}\"")
            } else {
                String::new()
            };
            let class = match (rule.effect, r.cancelled_by, rule.conditions.is_empty()) {
                (Effect::Deny, _, _) => "deny",
                (Effect::Allow, Some(_), _) => "cancelled",
                (Effect::Allow, None, false) => "cond",
                (Effect::Allow, None, true) => "allow",
            };
            let paths: Vec<String> = paths_of(rule)
                .into_iter()
                .map(|p| format!("<code>{}</code>", escape(p)))
                .collect();
            let conditions = if rule.conditions.is_empty() {
                "<span class=\"note\">none</span>".to_string()
            } else {
                escape(&rule.conditions.to_string())
            };
            let mut rule_cell = format!(
                "<code>{}</code> <span class=\"note\">(line {})</span>",
                escape(&rule.id),
                rule.line
            );
            if let Some(deny) = r.cancelled_by {
                write!(
                    rule_cell,
                    "<br><strong>{}</strong>",
                    escape(&cancelled_note(deny))
                )?;
            }
            if let Some(d) = &rule.description {
                write!(rule_cell, "<br><span class=\"note\">{}</span>", escape(d))?;
            }
            writeln!(
                out,
                "<tr{anchor}><td><code>{}</code></td><td><code>{}</code></td>\
                 <td><span class=\"m {class}\">{}</span></td><td><code>{}</code></td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&g.caller_name(&edge.caller)),
                escape(g.target_name(edge.target)),
                rule.effect,
                rule.methods,
                paths.join("<br>"),
                conditions,
                rule_cell
            )?;
        }
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")
}

/// The rate limits, when the file has any.
fn limit_list(out: &mut String, g: &Grid<'_>) -> fmt::Result {
    let limits = g.rules.limits();
    if limits.is_empty() {
        return Ok(());
    }
    writeln!(out, "<h2>Rate limits</h2>")?;
    writeln!(
        out,
        "<p class=\"note\">Calls are counted before the matrix decides, so denied calls count too.</p>"
    )?;
    writeln!(out, "<table>")?;
    writeln!(
        out,
        "<thead><tr><th>limit</th><th>counts</th><th>rate</th><th>description</th></tr></thead>"
    )?;
    writeln!(out, "<tbody>")?;
    for l in limits {
        writeln!(
            out,
            "<tr><td><code>{}</code> <span class=\"note\">(line {})</span></td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&l.id),
            l.line,
            escape(&g.rules.limit_scope_name(&l.scope)),
            escape(&l.to_string()),
            l.description.as_deref().map_or_else(String::new, escape)
        )?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")
}

/// Text made inert in HTML content and in quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in HTML text; show them.
            c if c.is_control() && c != '\n' && c != '\t' => out.extend(c.escape_default()),
            c => out.push(c),
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
    fn escape_makes_markup_inert() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("a\u{1b}[1m\nb"), "a\\u{1b}[1m\nb");
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let out = render(&small(), Format::Html);
        assert!(out.starts_with("<!DOCTYPE html>\n"));
        assert!(out.ends_with("</html>\n"));
        assert!(out.contains("<title>Allow matrix of t.toml</title>"));
        // The description's markup is text, in the PBC table and in tooltips.
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<b>never"), "{out}");
        assert!(
            out.contains("<td>Front &lt;script&gt;alert(1)&lt;/script&gt; | &quot;end&quot;</td>")
        );
        assert!(
            out.contains("title=\"Front &lt;script&gt;alert(1)&lt;/script&gt; | &quot;end&quot;\"")
        );
        assert!(out.contains("Admin is &lt;b&gt;never&lt;/b&gt; reachable"));
        // Nothing external: no scripts, links or remote URLs.
        for needle in ["<script", "<link", "src=", "http://", "https://", "@import"] {
            assert!(!out.contains(needle), "{needle}");
        }
        // Cells are coloured by what they hold and link to their edge.
        assert!(out.contains(
            "<td class=\"allow\"><a href=\"#edge-0\" title=\"web-reads-api, web-admin\">\
             <span class=\"m allow\">A!</span></a></td>"
        ));
        assert!(out.contains("<span class=\"m cond\">A*</span>"));
        assert!(out.contains("<td class=\"deny\"><a href=\"#edge-2\" title=\"no-admin\">"));
        assert!(out.contains("<tr id=\"edge-2\">"));
        assert!(out.contains("Rules in the * row apply to every caller"));
    }
}
