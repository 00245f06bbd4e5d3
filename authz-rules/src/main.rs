//! `authz-rules`: check, explain, render, diff and test an allow matrix.
//!
//! Exit codes: 0 success (valid / allowed / not widened / all cases pass),
//! 1 the answer is "no" (invalid file / denied / access widened / a case
//! failed), 2 the command could not run (unreadable file, bad arguments, or a
//! rules file with errors given to a command other than `check`).

use authz_rules::cases::Cases;
use authz_rules::render::{self, Format};
use authz_rules::{Caller, Diagnostics, Effect, Outcome, Request, Rules, diff};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// Check, explain, render, diff and test the cross-PBC allow matrix.
#[derive(Parser)]
#[command(name = "authz-rules", version, about, long_about = None)]
#[command(after_help = "\
Examples:
  authz-rules check examples/rules/commerce.toml
  authz-rules explain examples/rules/commerce.toml --caller catalogue --target order --path /orders/42
  authz-rules matrix examples/rules/commerce.toml --format html -o matrix.html
  authz-rules diff rules-old.toml rules-new.toml
  authz-rules test examples/rules/commerce.toml examples/rules/commerce.cases.toml

Exit codes: 0 yes (valid, allowed, not widened, all cases pass); \
1 no (invalid, denied, widened, a case failed); 2 could not run.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a rules file: errors and warnings with file, line and column.
    #[command(after_help = "\
Examples:
  authz-rules check examples/rules/commerce.toml
  authz-rules check rules.toml --deny-warnings        # in CI: warnings fail too
  authz-rules check rules.toml --format json")]
    Check {
        /// The rules file (TOML).
        file: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TextOrJson::Human)]
        format: TextOrJson,
        /// Treat warnings as errors (exit 1 when there are any).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Decide one request and show the rules that led to the decision.
    #[command(after_help = "\
Examples:
  # why is catalogue refused on order? (default deny: no rule allows it)
  authz-rules explain examples/rules/commerce.toml --caller catalogue --target order --path /orders/42
  # an explicit deny beats an allow
  authz-rules explain examples/rules/commerce.toml --caller checkout --target order \\
      --method DELETE --path /orders/42
  # by role ARN, with a principal tag and a source address
  authz-rules explain rules.toml --caller arn:aws:iam::111122223333:role/CheckoutPBCRole \\
      --target payment --method POST --path /payments --tag team=checkout --source-ip 10.1.2.3")]
    Explain {
        /// The rules file (TOML).
        file: String,
        /// The caller: a principal ARN (role or assumed-role session) or a PBC name.
        #[arg(long)]
        caller: String,
        /// The target PBC.
        #[arg(long)]
        target: String,
        /// The HTTP method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request path (as sent; it is normalized before matching).
        #[arg(long)]
        path: String,
        /// The client address, for source_cidrs conditions.
        #[arg(long)]
        source_ip: Option<IpAddr>,
        /// A principal tag, KEY=VALUE (repeatable).
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// The request time (RFC 3339 UTC, e.g. 2026-11-23T09:00:00Z); default now.
        #[arg(long)]
        time: Option<String>,
        /// List every rule, not only those naming this caller and target.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TextOrJson::Human)]
        format: TextOrJson,
    },
    /// Render who may call whom, with methods and paths per edge.
    #[command(after_help = "\
Examples:
  authz-rules matrix examples/rules/commerce.toml                  # terminal table
  authz-rules matrix examples/rules/commerce.toml --format markdown
  authz-rules matrix examples/rules/commerce.toml --format html -o matrix.html
  authz-rules matrix examples/rules/commerce.toml --format dot | dot -Tsvg > matrix.svg")]
    Matrix {
        /// The rules file (TOML).
        file: String,
        /// table (terminal), markdown, html (self-contained page), dot (Graphviz), json.
        #[arg(long, default_value = "table")]
        format: Format,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<String>,
    },
    /// Show which edges a change opens and closes; exit 1 when access widened.
    #[command(after_help = "\
Examples:
  authz-rules diff <(git show main:rules.toml) rules.toml   # review a change
  authz-rules diff old.toml new.toml --format json

Exit status 1 when the change opens access (a new edge, method or path): a review gate.")]
    Diff {
        /// The rules file before the change.
        old: String,
        /// The rules file after the change.
        new: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = TextOrJson::Human)]
        format: TextOrJson,
    },
    /// Run a table of expected decisions against a rules file.
    #[command(after_help = "\
Examples:
  authz-rules test examples/rules/commerce.toml examples/rules/commerce.cases.toml
  authz-rules test rules.toml cases.toml -v --time 2026-11-23T09:00:00Z

A case: [[case]] with caller, target, method, path and expect = \"allow\" or \"deny\";
optional name, rule and reason (pins), tags, source_ip and time.
See examples/rules/commerce.cases.toml.")]
    Test {
        /// The rules file (TOML).
        file: String,
        /// The cases file (TOML, [[case]] tables).
        cases: String,
        /// The time for cases without one (RFC 3339 UTC); default now.
        #[arg(long)]
        time: Option<String>,
        /// Print passing cases too.
        #[arg(long, short)]
        verbose: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TextOrJson {
    Human,
    Json,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}`: write tags as KEY=VALUE"))
}

/// A failure to run: message for standard error, exit code 2.
struct Fatal(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(Fatal(msg)) => {
            eprintln!("authz-rules: {msg}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &str) -> Result<String, Fatal> {
    std::fs::read_to_string(path).map_err(|e| Fatal(format!("cannot read {path}: {e}")))
}

fn load(path: &str) -> Result<Rules, Fatal> {
    Rules::parse(&read(path)?, path).map_err(|d| {
        Fatal(format!(
            "{path} has errors; run `authz-rules check {path}`\n\n{d}"
        ))
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn time_arg(t: Option<&str>) -> Result<i64, Fatal> {
    match t {
        None => Ok(now()),
        Some(t) => authz_rules::condition::parse_rfc3339(t).map_err(Fatal),
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn yes(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(cmd: Command) -> Result<ExitCode, Fatal> {
    match cmd {
        Command::Check {
            file,
            format,
            deny_warnings,
        } => {
            let text = read(&file)?;
            let (diags, rules) = match Rules::parse(&text, &file) {
                Ok(rules) => (rules.warnings().clone(), Some(rules)),
                Err(d) => (d, None),
            };
            let ok = rules.is_some() && (!deny_warnings || diags.is_empty());
            match format {
                TextOrJson::Json => println!(
                    "{}",
                    json(&serde_json::json!({
                        "file": file,
                        "valid": rules.is_some(),
                        "diagnostics": diags.to_json(),
                    }))
                ),
                TextOrJson::Human => print_check(&file, &diags, rules.as_ref()),
            }
            Ok(yes(ok))
        }
        Command::Explain {
            file,
            caller,
            target,
            method,
            path,
            source_ip,
            tags,
            time,
            all,
            format,
        } => {
            let rules = load(&file)?;
            let now = time_arg(time.as_deref())?;
            let tag_refs: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let caller_ref = if caller.starts_with("arn:") {
                Caller::Principal(&caller)
            } else if rules.pbc(&caller).is_some() {
                Caller::Pbc(&caller)
            } else {
                return Err(Fatal(format!(
                    "--caller `{caller}` is neither an ARN nor a PBC of {file}"
                )));
            };
            let req = Request {
                caller: caller_ref,
                target: &target,
                method: &method,
                path: &path,
                source_ip,
                tags: &tag_refs,
                now,
            };
            let ex = rules.explain(&req);
            let fast = rules.decide(&req);
            if fast != ex.decision {
                return Err(Fatal(format!(
                    "internal inconsistency: the matrix decided `{fast}` but the rule walk `{}`; please report this with the rules file",
                    ex.decision
                )));
            }
            match format {
                TextOrJson::Json => println!("{}", json(&explain_json(&rules, &req, &ex))),
                TextOrJson::Human => print_explain(&rules, &req, &ex, all),
            }
            Ok(yes(ex.decision.is_allowed()))
        }
        Command::Matrix {
            file,
            format,
            output,
        } => {
            let rules = load(&file)?;
            let text = render::render(&rules, format);
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .map_err(|e| Fatal(format!("cannot write {path}: {e}")))?;
                    eprintln!("wrote {path}");
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { old, new, format } => {
            let (a, b) = (load(&old)?, load(&new)?);
            let d = diff::diff(&a, &b);
            match format {
                TextOrJson::Json => println!(
                    "{}",
                    json(&serde_json::json!({
                        "old": old, "new": new, "widened": d.widened(), "diff": d,
                    }))
                ),
                TextOrJson::Human => {
                    println!("--- {old}\n+++ {new}\n");
                    print!("{d}");
                }
            }
            Ok(yes(!d.widened()))
        }
        Command::Test {
            file,
            cases,
            time,
            verbose,
        } => {
            let rules = load(&file)?;
            let text = read(&cases)?;
            let parsed = Cases::parse(&text, &cases, &rules)
                .map_err(|d| Fatal(format!("{cases} has errors\n\n{d}")))?;
            let now = time_arg(time.as_deref())?;
            let results = parsed.run(&rules, now);
            let failed = results.iter().filter(|r| !r.passed()).count();
            for r in &results {
                if verbose || !r.passed() {
                    println!("{r}");
                }
            }
            println!(
                "{}: {} case(s), {} passed, {failed} failed",
                cases,
                results.len(),
                results.len() - failed
            );
            Ok(yes(failed == 0))
        }
    }
}

fn print_check(file: &str, diags: &Diagnostics, rules: Option<&Rules>) {
    for d in diags.items() {
        println!("{d}");
    }
    let (e, w) = (diags.errors().count(), diags.warnings().count());
    match rules {
        Some(r) => println!(
            "{file}: valid: {} PBCs, {} rules ({} allow, {} deny), {} limits; {w} warning(s)",
            r.pbcs().len(),
            r.rules().len(),
            r.rules()
                .iter()
                .filter(|x| x.effect == Effect::Allow)
                .count(),
            r.rules()
                .iter()
                .filter(|x| x.effect == Effect::Deny)
                .count(),
            r.limits().len(),
        ),
        None => println!("{file}: invalid: {e} error(s), {w} warning(s)"),
    }
}

fn print_explain(rules: &Rules, req: &Request<'_>, ex: &authz_rules::Explanation<'_>, all: bool) {
    println!("request:  {} {} -> {}", req.method, req.path, req.target);
    let who = match (req.caller, &ex.principal) {
        (Caller::Principal(given), Some(role)) if given != role => {
            format!("{given}\n          (a session, matched as its role {role})\n         ")
        }
        (_, Some(role)) => role.clone(),
        (_, None) => String::new(),
    };
    match (&ex.principal, ex.caller_pbc) {
        (Some(_), Some((pbc, Some(pat)))) => {
            println!("caller:   {who} is PBC `{pbc}` (principal pattern `{pat}`)")
        }
        (Some(_), _) => println!("caller:   {who} belongs to no PBC"),
        (None, Some((pbc, _))) => println!(
            "caller:   PBC `{pbc}` (no principal ARN: rules naming role-ARN patterns are not applied)"
        ),
        (None, None) => println!("caller:   unknown"),
    }
    if !ex.target_known {
        println!(
            "target:   `{}` is not a PBC of {}; only `*` rules apply",
            req.target,
            rules.origin()
        );
    }
    match &ex.path {
        Ok(p) => println!("path:     {p} (normalized)"),
        Err(e) => println!("path:     cannot be matched: {e}"),
    }
    let relevant: Vec<_> = ex
        .steps
        .iter()
        .filter(|s| all || !matches!(s.outcome, Outcome::OtherCaller | Outcome::OtherTarget))
        .collect();
    let skipped = ex.steps.len() - relevant.len();
    println!(
        "rules:    {} for this caller and target, in file order{}",
        relevant.len(),
        if skipped > 0 {
            format!(" ({skipped} others name other callers or targets; --all lists them)")
        } else {
            String::new()
        }
    );
    let decisive = ex.decision.rule_id();
    let width = relevant.iter().map(|s| s.rule.id.len()).max().unwrap_or(0);
    for s in relevant {
        let mark = if Some(&*s.rule.id) == decisive {
            "=>"
        } else if s.outcome == Outcome::Matched {
            " +"
        } else {
            "  "
        };
        println!(
            "  {mark} {:<5} {:<width$}  line {:<4} {}",
            s.rule.effect.to_string(),
            s.rule.id,
            s.rule.line,
            s.outcome
        );
    }
    print_limits(rules, req, ex);
    println!("decision: {}", ex.decision);
}

/// The limits a request counts against (its caller and target PBCs'), when
/// the file has any.
fn print_limits(rules: &Rules, req: &Request<'_>, ex: &authz_rules::Explanation<'_>) {
    if rules.limits().is_empty() {
        return;
    }
    let limits = request_limits(rules, req, ex);
    let Some(limits) = limits else {
        println!("limits:   none: only calls from a PBC to a PBC are counted");
        return;
    };
    if limits.is_empty() {
        println!("limits:   none for this caller and target");
        return;
    }
    println!(
        "limits:   {} this call counts against, in file order (denied calls count too)",
        limits.len()
    );
    let width = limits.iter().map(|l| l.id.len()).max().unwrap_or(0);
    let rates: Vec<String> = limits.iter().map(ToString::to_string).collect();
    let rate_width = rates.iter().map(String::len).max().unwrap_or(0);
    for (l, rate) in limits.iter().zip(&rates) {
        println!(
            "     {:<width$}  line {:<4} {:<rate_width$}  ({})",
            l.id,
            l.line,
            rate,
            rules.limit_scope_name(&l.scope)
        );
    }
}

/// The limits of a request, or `None` when its caller or target is no PBC.
fn request_limits<'r>(
    rules: &'r Rules,
    req: &Request<'_>,
    ex: &authz_rules::Explanation<'_>,
) -> Option<Vec<&'r authz_rules::Limit>> {
    let caller = ex.caller_pbc.and_then(|(pbc, _)| rules.pbc(pbc))?;
    let target = rules.pbc(req.target)?;
    Some(rules.limits_for(caller, target).collect())
}

fn limit_json(rules: &Rules, l: &authz_rules::Limit) -> serde_json::Value {
    serde_json::json!({
        "id": l.id,
        "scope": rules.limit_scope_name(&l.scope),
        "requests": l.requests,
        "per_seconds": l.per.as_secs(),
        "burst": l.burst,
        "line": l.line,
        "description": l.description,
    })
}

fn explain_json(
    rules: &Rules,
    req: &Request<'_>,
    ex: &authz_rules::Explanation<'_>,
) -> serde_json::Value {
    let limits: Vec<serde_json::Value> = request_limits(rules, req, ex)
        .unwrap_or_default()
        .into_iter()
        .map(|l| limit_json(rules, l))
        .collect();
    serde_json::json!({
        "file": rules.origin(),
        "principal": ex.principal,
        "caller_pbc": ex.caller_pbc.map(|(p, _)| p),
        "caller_pattern": ex.caller_pbc.and_then(|(_, pat)| pat),
        "target_known": ex.target_known,
        "path": ex.path.as_ref().map_err(ToString::to_string).ok(),
        "path_error": ex.path.as_ref().err().map(ToString::to_string),
        "decision": {
            "effect": ex.decision.effect,
            "rule": ex.decision.rule_id(),
            "reason": ex.decision.to_string(),
        },
        "steps": ex.steps.iter().map(|s| serde_json::json!({
            "rule": &*s.rule.id,
            "effect": s.rule.effect,
            "line": s.rule.line,
            "outcome": s.outcome.to_string(),
            "matched": s.outcome == Outcome::Matched,
        })).collect::<Vec<_>>(),
        "limits": limits,
    })
}
