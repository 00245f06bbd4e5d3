//! The compiled matrix (`Rules::decide`), the linear walk (`Rules::explain`)
//! and a naive evaluator written here from the language's definition must
//! reach the same decision for random rules files and random requests.
//!
//! The naive evaluator works on the generated description of the file, not
//! on the crate's model: its own glob matcher, session-ARN rewriting, path
//! normalization, segment matcher, CIDR, tag and time checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use authz_rules::path::PathError;
use authz_rules::{Caller, Decision, Effect, Outcome, Reason, Request, Rules};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm};
use std::fmt::Write as _;
use std::net::IpAddr;

// ---------------------------------------------------------------------------
// The generated description of a rules file
// ---------------------------------------------------------------------------

const PBC_NAMES: [&str; 4] = ["p0", "p1", "p2", "p3"];

const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// Role-ARN patterns that rules name as callers.
const CALLER_ARNS: [&str; 6] = [
    "arn:aws:iam::111:role/p1",
    "arn:aws:iam::111:role/*",
    "arn:aws:iam::*:role/p?-*",
    "arn:aws:iam::111:role/pbc/*",
    "arn:aws:iam::222:role/p0",
    "arn:aws:iam::111:role/p1-worker",
];

const CIDRS: [&str; 8] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "192.168.1.0/24",
    "10.1.2.3",
    "0.0.0.0/0",
    "::1",
    "fd00::/8",
    "127.0.0.0/8",
];

const IPS: [&str; 8] = [
    "10.1.2.3",
    "10.2.0.1",
    "192.168.1.7",
    "8.8.8.8",
    "::1",
    "::ffff:10.1.2.3",
    "fd12::1",
    "127.0.0.1",
];

/// Tag keys as rules write them (distinct ignoring case).
const RULE_TAG_KEYS: [&str; 3] = ["team", "Env", "TIER"];
/// Tag keys as requests carry them: the same three keys, cased three ways.
const REQ_TAG_KEYS: [[&str; 3]; 3] = [
    ["team", "Team", "TEAM"],
    ["env", "Env", "ENV"],
    ["tier", "Tier", "TIER"],
];
const TAG_VALUES: [&str; 4] = ["payments", "risk", "Payments", "ops"];

const DAY_NAMES: [&str; 14] = [
    "mon", "tue", "wed", "thu", "fri", "sat", "sun", "Monday", "TUE", "Wed", "thursday", "FRI",
    "sat", "Sunday",
];

/// 2026-11-01T00:00:00Z, a Sunday.
const NOV_1_2026: i64 = 1_793_491_200;

#[derive(Clone, Debug)]
struct FileSpec {
    pbcs: Vec<PbcSpec>,
    rules: Vec<RuleSpec>,
}

#[derive(Clone, Debug)]
struct PbcSpec {
    name: &'static str,
    principals: Vec<String>,
}

#[derive(Clone, Debug)]
struct RuleSpec {
    id: String,
    deny: bool,
    caller: String,
    target: String,
    methods: Vec<&'static str>,
    paths: Vec<String>,
    source_cidrs: Option<Vec<&'static str>>,
    not_source_cidrs: Option<Vec<&'static str>>,
    tags: Option<Vec<(&'static str, Vec<&'static str>)>>,
    time: Option<TimeSpec>,
}

#[derive(Clone, Debug)]
struct TimeSpec {
    not_before: Option<Instant>,
    not_after: Option<Instant>,
    days: Option<Vec<&'static str>>,
    /// Minutes since midnight, start inclusive, end exclusive.
    hours: Option<(u16, u16)>,
}

/// An instant in November 2026.
#[derive(Clone, Copy, Debug)]
struct Instant {
    day: u8,
    hour: u8,
    date_only: bool,
}

impl Instant {
    fn secs(self) -> i64 {
        let hour = if self.date_only {
            0
        } else {
            i64::from(self.hour)
        };
        NOV_1_2026 + (i64::from(self.day) - 1) * 86_400 + hour * 3600
    }

    fn text(self) -> String {
        if self.date_only {
            format!("2026-11-{:02}", self.day)
        } else {
            format!("2026-11-{:02}T{:02}:00:00Z", self.day, self.hour)
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Principal patterns PBCs may own, each with the PBC it is "about" (if any).
fn principal_pool() -> Vec<(String, Option<usize>)> {
    let mut pool = Vec::new();
    for (i, n) in PBC_NAMES.iter().enumerate() {
        pool.push((format!("arn:aws:iam::111:role/{n}"), Some(i)));
        pool.push((format!("arn:aws:iam::111:role/{n}-*"), Some(i)));
        pool.push((format!("arn:aws:iam::*:role/{n}"), Some(i)));
    }
    for shared in [
        "arn:aws:iam::111:role/*",
        "arn:aws:iam::111:role/p?",
        "arn:aws:iam::111:role/*-worker",
        "arn:aws:iam::111:role/pbc/*",
        // These two tie on specificity: file order decides.
        "arn:aws:iam::111:role/p*",
        "arn:aws:iam::111:role/*1",
        "arn:aws:iam::222:role/p0",
        "arn:aws:iam::111:role/p1-worker",
        // Its literal prefix can be the whole ARN (`role/p1`).
        "arn:aws:iam::111:role/p1*",
    ] {
        pool.push((shared.to_string(), None));
    }
    pool
}

#[derive(Clone, Debug)]
enum CallerGen {
    Pbc(usize),
    Any,
    Arn(usize),
}

#[derive(Clone, Debug)]
struct RuleGen {
    deny: bool,
    caller: CallerGen,
    target: Option<usize>,
    methods: Vec<&'static str>,
    paths: Vec<String>,
    source_cidrs: Option<Vec<&'static str>>,
    not_source_cidrs: Option<Vec<&'static str>>,
    tags: Option<Vec<(&'static str, Vec<&'static str>)>>,
    time: Option<TimeSpec>,
}

fn path_pattern() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        3 => Just("a"),
        3 => Just("b"),
        2 => Just("c"),
        2 => Just("*"),
        2 => Just("{id}"),
        1 => Just("%61"),
    ];
    (prop::collection::vec(seg, 0..4), prop::bool::weighted(0.35)).prop_map(|(segs, rest)| {
        let mut p = String::new();
        for s in segs {
            p.push('/');
            p.push_str(s);
        }
        if rest {
            p.push_str("/**");
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    })
}

fn methods() -> impl Strategy<Value = Vec<&'static str>> {
    prop_oneof![
        1 => Just(vec!["*"]),
        5 => prop::collection::vec(prop::sample::select(KNOWN_METHODS.to_vec()), 1..5),
        1 => prop::collection::vec(prop::sample::select(KNOWN_METHODS.to_vec()), 1..3)
            .prop_map(|mut m| { m.push("*"); m }),
    ]
}

fn instant() -> impl Strategy<Value = Instant> {
    (1u8..=28, 0u8..24, prop::bool::weighted(0.3)).prop_map(|(day, hour, date_only)| Instant {
        day,
        hour,
        date_only,
    })
}

fn time_spec() -> impl Strategy<Value = TimeSpec> {
    (
        prop::option::weighted(0.4, instant()),
        prop::option::weighted(0.4, instant()),
        prop::option::weighted(
            0.4,
            prop::collection::vec(prop::sample::select(DAY_NAMES.to_vec()), 1..4),
        ),
        prop::option::weighted(0.4, (0u16..96, 1u16..=96)),
    )
        .prop_map(|(not_before, mut not_after, days, hours)| {
            if let (Some(a), Some(b)) = (not_before, not_after)
                && a.secs() >= b.secs()
            {
                not_after = None;
            }
            let hours = hours.map(|(s, e)| {
                let e = if s == e { s + 1 } else { e };
                (s * 15, e * 15)
            });
            let mut t = TimeSpec {
                not_before,
                not_after,
                days,
                hours,
            };
            if t.not_before.is_none()
                && t.not_after.is_none()
                && t.days.is_none()
                && t.hours.is_none()
            {
                t.days = Some(vec!["mon", "wed", "fri"]);
            }
            t
        })
}

fn tags_spec() -> impl Strategy<Value = Vec<(&'static str, Vec<&'static str>)>> {
    prop::sample::subsequence(RULE_TAG_KEYS.to_vec(), 1..=2).prop_flat_map(|keys| {
        let n = keys.len();
        (
            Just(keys),
            prop::collection::vec(
                prop::collection::vec(prop::sample::select(TAG_VALUES.to_vec()), 1..3),
                n,
            ),
        )
            .prop_map(|(keys, values)| keys.into_iter().zip(values).collect())
    })
}

fn cidr_list() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(CIDRS.to_vec()), 1..3)
}

fn rule_gen() -> impl Strategy<Value = RuleGen> {
    let caller = prop_oneof![
        6 => (0usize..4).prop_map(CallerGen::Pbc),
        2 => Just(CallerGen::Any),
        2 => (0..CALLER_ARNS.len()).prop_map(CallerGen::Arn),
    ];
    let target = prop::option::weighted(0.8, 0usize..4);
    (
        prop::bool::weighted(0.35),
        caller,
        target,
        methods(),
        prop::collection::vec(path_pattern(), 1..4),
        prop::option::weighted(0.12, cidr_list()),
        prop::option::weighted(0.08, cidr_list()),
        prop::option::weighted(0.12, tags_spec()),
        prop::option::weighted(0.12, time_spec()),
    )
        .prop_map(
            |(deny, caller, target, methods, paths, source_cidrs, not_source_cidrs, tags, time)| {
                RuleGen {
                    deny,
                    caller,
                    target,
                    methods,
                    paths,
                    source_cidrs,
                    not_source_cidrs,
                    tags,
                    time,
                }
            },
        )
}

fn file_spec() -> impl Strategy<Value = FileSpec> {
    (
        1usize..=4,
        Just(principal_pool()).prop_shuffle(),
        prop::collection::vec((0u8..4, 0usize..4), principal_pool().len()),
        prop::collection::vec(rule_gen(), 1..40),
    )
        .prop_map(|(n, pool, owners, rules)| {
            let mut pbcs: Vec<PbcSpec> = PBC_NAMES
                .iter()
                .take(n)
                .map(|name| PbcSpec {
                    name,
                    principals: Vec::new(),
                })
                .collect();
            for ((pattern, home), (sel, other)) in pool.into_iter().zip(owners) {
                let owner = match sel {
                    0 | 1 => Some(home.filter(|&h| h < n).unwrap_or(other % n)),
                    2 => None,
                    _ => Some(other % n),
                };
                if let Some(o) = owner {
                    pbcs[o].principals.push(pattern);
                }
            }
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(i, g)| RuleSpec {
                    id: format!("r{i}"),
                    deny: g.deny,
                    caller: match g.caller {
                        CallerGen::Pbc(p) => PBC_NAMES[p % n].to_string(),
                        CallerGen::Any => "*".to_string(),
                        CallerGen::Arn(a) => CALLER_ARNS[a].to_string(),
                    },
                    target: g
                        .target
                        .map_or("*".to_string(), |t| PBC_NAMES[t % n].to_string()),
                    methods: g.methods,
                    paths: g.paths,
                    source_cidrs: g.source_cidrs,
                    not_source_cidrs: g.not_source_cidrs,
                    tags: g.tags,
                    time: g.time,
                })
                .collect();
            FileSpec { pbcs, rules }
        })
}

#[derive(Clone, Debug)]
enum ReqCaller {
    Principal(String),
    Pbc(&'static str),
}

#[derive(Clone, Debug)]
struct ReqSpec {
    caller: ReqCaller,
    target: &'static str,
    method: &'static str,
    path: String,
    source_ip: Option<IpAddr>,
    tags: Vec<(&'static str, &'static str)>,
    now: i64,
}

const ROLES: [&str; 12] = [
    "p",
    "p0",
    "p1",
    "p2",
    "p3",
    "p1-worker",
    "p2-x",
    "pbc/p1",
    "zz",
    "p1-worker-2",
    "q1",
    "p21",
];

fn principal() -> impl Strategy<Value = String> {
    (
        0u8..10,
        prop::sample::select(vec!["111", "111", "222", "333"]),
        prop::sample::select(ROLES.to_vec()),
    )
        .prop_map(|(kind, account, role)| match kind {
            0..=4 => format!("arn:aws:iam::{account}:role/{role}"),
            5..=8 => format!("arn:aws:sts::{account}:assumed-role/{role}/session-{kind}"),
            // Not a complete session ARN: matched as written.
            _ => format!("arn:aws:sts::{account}:assumed-role/{role}"),
        })
}

fn request_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        6 => Just("a"),
        5 => Just("b"),
        2 => Just("c"),
        1 => Just("x"),
        2 => Just(""),
        1 => Just("."),
        1 => Just(".."),
        1 => Just("%61"),
        1 => Just("%62"),
        1 => Just("%2e%2e"),
        1 => Just("%2E"),
    ];
    let normal = (
        prop::collection::vec(seg, 0..5),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.05, prop::sample::select(vec!["?x=/admin", "?", "?a=b"])),
    )
        .prop_map(|(segs, slash, query)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash {
                p.push('/');
            }
            if let Some(q) = query {
                p.push_str(q);
            }
            p
        });
    prop_oneof![
        30 => normal,
        1 => prop::sample::select(vec!["/a%2Fb", "/a/%2f", "/%2F/a", "/a/b%2Fc/.."]).prop_map(String::from),
        1 => prop::sample::select(vec!["/a/%zz", "/a%4", "a/b", "", "/%61%2"]).prop_map(String::from),
    ]
}

fn request() -> impl Strategy<Value = ReqSpec> {
    let caller = prop_oneof![
        9 => principal().prop_map(ReqCaller::Principal),
        1 => prop::sample::select(vec!["p0", "p1", "p2", "p3", "ghost"]).prop_map(ReqCaller::Pbc),
    ];
    let mut methods = KNOWN_METHODS.to_vec();
    methods.extend(["GET", "GET", "GET", "POST", "POST", "PROPFIND", "get"]);
    let tag = |keys: [&'static str; 3]| {
        prop::option::weighted(
            0.5,
            (
                prop::sample::select(keys.to_vec()),
                prop::sample::select(TAG_VALUES.to_vec()),
            ),
        )
    };
    (
        caller,
        prop::sample::select(vec!["p0", "p0", "p1", "p1", "p2", "p3", "unknown"]),
        prop::sample::select(methods),
        request_path(),
        prop::option::weighted(0.8, prop::sample::select(IPS.to_vec())),
        (
            tag(REQ_TAG_KEYS[0]),
            tag(REQ_TAG_KEYS[1]),
            tag(REQ_TAG_KEYS[2]),
        ),
        // From 2026-10-29 to 2026-12-05, minute resolution.
        (0i64..38 * 24, 0i64..60),
    )
        .prop_map(
            |(caller, target, method, path, ip, (t0, t1, t2), (h, m))| ReqSpec {
                caller,
                target,
                method,
                path,
                source_ip: ip.map(|s| s.parse().unwrap()),
                tags: [t0, t1, t2].into_iter().flatten().collect(),
                now: NOV_1_2026 - 3 * 86_400 + h * 3600 + m * 60,
            },
        )
}

// ---------------------------------------------------------------------------
// The file as TOML
// ---------------------------------------------------------------------------

fn quoted<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn to_toml(spec: &FileSpec) -> String {
    let mut s = String::new();
    for p in &spec.pbcs {
        writeln!(s, "[[pbc]]\nname = \"{}\"", p.name).unwrap();
        writeln!(s, "principals = {}\n", quoted(&p.principals)).unwrap();
    }
    for r in &spec.rules {
        writeln!(s, "[[{}]]", if r.deny { "deny" } else { "allow" }).unwrap();
        writeln!(s, "id = \"{}\"", r.id).unwrap();
        writeln!(s, "caller = \"{}\"", r.caller).unwrap();
        writeln!(s, "target = \"{}\"", r.target).unwrap();
        writeln!(s, "methods = {}", quoted(&r.methods)).unwrap();
        writeln!(s, "paths = {}", quoted(&r.paths)).unwrap();
        if let Some(c) = &r.source_cidrs {
            writeln!(s, "source_cidrs = {}", quoted(c)).unwrap();
        }
        if let Some(c) = &r.not_source_cidrs {
            writeln!(s, "not_source_cidrs = {}", quoted(c)).unwrap();
        }
        if let Some(tags) = &r.tags {
            let parts: Vec<String> = tags
                .iter()
                .map(|(k, v)| match v.as_slice() {
                    [one] => format!("{k} = \"{one}\""),
                    many => format!("{k} = {}", quoted(many)),
                })
                .collect();
            writeln!(s, "principal_tags = {{ {} }}", parts.join(", ")).unwrap();
        }
        if let Some(t) = &r.time {
            let mut parts = Vec::new();
            if let Some(i) = t.not_before {
                parts.push(format!("not_before = \"{}\"", i.text()));
            }
            if let Some(i) = t.not_after {
                parts.push(format!("not_after = \"{}\"", i.text()));
            }
            if let Some(d) = &t.days {
                parts.push(format!("days = {}", quoted(d)));
            }
            if let Some((a, b)) = t.hours {
                parts.push(format!(
                    "hours = \"{:02}:{:02}-{:02}:{:02}\"",
                    a / 60,
                    a % 60,
                    b / 60,
                    b % 60
                ));
            }
            writeln!(s, "time = {{ {} }}", parts.join(", ")).unwrap();
        }
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------
// The naive evaluator
// ---------------------------------------------------------------------------

/// `*` is any run of bytes, `?` exactly one; plain backtracking (the
/// generated patterns have at most two `*`).
fn naive_glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            naive_glob(rest, text) || (!text.is_empty() && naive_glob(pattern, &text[1..]))
        }
        Some((b'?', rest)) => !text.is_empty() && naive_glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && naive_glob(rest, &text[1..]),
    }
}

/// `arn:P:sts::A:assumed-role/R/S` is matched as `arn:P:iam::A:role/R`.
fn naive_role(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [a, partition, "sts", "", account, resource] = parts.as_slice()
        && *a == "arn"
        && let Some(rs) = resource.strip_prefix("assumed-role/")
        && let Some(cut) = rs.rfind('/')
        && cut > 0
    {
        return format!("arn:{partition}:iam::{account}:role/{}", &rs[..cut]);
    }
    arn.to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NPathErr {
    NotAbsolute,
    Ambiguous,
    BadEscape,
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn naive_decode(seg: &str) -> Result<Vec<u8>, NPathErr> {
    let b = seg.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hexval),
                b.get(i + 2).copied().and_then(hexval),
            ) else {
                return Err(NPathErr::BadEscape);
            };
            let c = h * 16 + l;
            if c == b'/' || c == b'\\' || c == 0 {
                return Err(NPathErr::Ambiguous);
            }
            out.push(c);
            i += 3;
        } else {
            if b[i] == b'\\' || b[i] == 0 {
                return Err(NPathErr::Ambiguous);
            }
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn naive_normalize(path: &str) -> Result<Vec<Vec<u8>>, NPathErr> {
    let path = match path.find('?') {
        Some(q) => &path[..q],
        None => path,
    };
    if !path.starts_with('/') {
        return Err(NPathErr::NotAbsolute);
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for raw in path[1..].split('/') {
        let seg = naive_decode(raw)?;
        match seg.as_slice() {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    Ok(out)
}

enum NSeg {
    Lit(Vec<u8>),
    One,
    Rest,
}

fn naive_pattern(p: &str) -> Vec<NSeg> {
    if p == "/" {
        return Vec::new();
    }
    p[1..]
        .split('/')
        .map(|s| match s {
            "**" => NSeg::Rest,
            "*" => NSeg::One,
            s if s.starts_with('{') => NSeg::One,
            s => NSeg::Lit(naive_decode(s).unwrap()),
        })
        .collect()
}

fn naive_path_match(pat: &[NSeg], path: &[Vec<u8>]) -> bool {
    match (pat.first(), path.first()) {
        (Some(NSeg::Rest), _) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(NSeg::One), Some(_)) => naive_path_match(&pat[1..], &path[1..]),
        (Some(NSeg::Lit(l)), Some(s)) => l == s && naive_path_match(&pat[1..], &path[1..]),
    }
}

fn naive_cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let (addr, prefix) = match cidr.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u32>().unwrap())),
        None => (cidr, None),
    };
    let net: IpAddr = addr.parse().unwrap();
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let len = prefix.unwrap_or(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let len = prefix.unwrap_or(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn naive_time(t: &TimeSpec, now: i64) -> bool {
    if t.not_before.is_some_and(|i| now < i.secs()) {
        return false;
    }
    if t.not_after.is_some_and(|i| now >= i.secs()) {
        return false;
    }
    if let Some(days) = &t.days {
        // November 1st 2026 is a Sunday; Monday is 0.
        let weekday = (6 + (now - NOV_1_2026).div_euclid(86_400)).rem_euclid(7);
        let names = [
            ["mon", "monday"],
            ["tue", "tuesday"],
            ["wed", "wednesday"],
            ["thu", "thursday"],
            ["fri", "friday"],
            ["sat", "saturday"],
            ["sun", "sunday"],
        ];
        let today = names[weekday as usize];
        if !days
            .iter()
            .any(|d| today.contains(&d.to_lowercase().as_str()))
        {
            return false;
        }
    }
    if let Some((start, end)) = t.hours {
        let minute = now.rem_euclid(86_400) / 60;
        let (s, e) = (i64::from(start), i64::from(end));
        let inside = if s < e {
            s <= minute && minute < e
        } else {
            minute >= s || minute < e
        };
        if !inside {
            return false;
        }
    }
    true
}

fn naive_conditions(r: &RuleSpec, q: &ReqSpec) -> bool {
    if let Some(c) = &r.source_cidrs
        && !q
            .source_ip
            .is_some_and(|ip| c.iter().any(|c| naive_cidr_contains(c, ip)))
    {
        return false;
    }
    if let Some(c) = &r.not_source_cidrs
        && q.source_ip
            .is_some_and(|ip| c.iter().any(|c| naive_cidr_contains(c, ip)))
    {
        return false;
    }
    if let Some(tags) = &r.tags {
        for (key, values) in tags {
            let have = q
                .tags
                .iter()
                .find(|(k, _)| k.to_lowercase() == key.to_lowercase())
                .map(|(_, v)| *v);
            if !have.is_some_and(|v| values.contains(&v)) {
                return false;
            }
        }
    }
    if let Some(t) = &r.time
        && !naive_time(t, q.now)
    {
        return false;
    }
    true
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NReason {
    Allowed,
    ExplicitDeny,
    NoRuleMatched,
    BadPath(NPathErr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Summary {
    deny: bool,
    rule_id: Option<String>,
    reason: NReason,
    caller_pbc: Option<String>,
}

fn summarize(d: &Decision<'_>) -> Summary {
    Summary {
        deny: d.effect == Effect::Deny,
        rule_id: d.rule_id().map(String::from),
        reason: match d.reason {
            Reason::Allowed => NReason::Allowed,
            Reason::ExplicitDeny => NReason::ExplicitDeny,
            Reason::NoRuleMatched => NReason::NoRuleMatched,
            Reason::BadPath(PathError::NotAbsolute) => NReason::BadPath(NPathErr::NotAbsolute),
            Reason::BadPath(PathError::AmbiguousSeparator) => NReason::BadPath(NPathErr::Ambiguous),
            Reason::BadPath(PathError::BadEscape) => NReason::BadPath(NPathErr::BadEscape),
        },
        caller_pbc: d.caller_pbc.map(String::from),
    }
}

/// The caller's PBC: among patterns matching the role ARN, literal first,
/// then most non-wildcard characters, then earliest in the file.
fn naive_caller_pbc(spec: &FileSpec, role: &str) -> Option<&'static str> {
    let mut best: Option<(&'static str, bool, usize)> = None;
    for p in &spec.pbcs {
        for pat in &p.principals {
            if !naive_glob(pat.as_bytes(), role.as_bytes()) {
                continue;
            }
            let literal = !pat.contains(['*', '?']);
            let specific = pat.chars().filter(|c| *c != '*' && *c != '?').count();
            if best.is_none_or(|(_, l, s)| (literal, specific) > (l, s)) {
                best = Some((p.name, literal, specific));
            }
        }
    }
    best.map(|b| b.0)
}

/// The decision, and the ids of every rule that matched.
fn naive_decide(spec: &FileSpec, q: &ReqSpec) -> (Summary, Vec<String>) {
    let (role, caller_pbc) = match &q.caller {
        ReqCaller::Principal(arn) => {
            let role = naive_role(arn);
            let pbc = naive_caller_pbc(spec, &role);
            (Some(role), pbc)
        }
        ReqCaller::Pbc(name) => (
            None,
            spec.pbcs.iter().find(|p| p.name == *name).map(|p| p.name),
        ),
    };
    let caller_pbc = caller_pbc.map(String::from);
    let path = match naive_normalize(&q.path) {
        Ok(p) => p,
        Err(e) => {
            let s = Summary {
                deny: true,
                rule_id: None,
                reason: NReason::BadPath(e),
                caller_pbc,
            };
            return (s, Vec::new());
        }
    };
    let mut matched = Vec::new();
    let (mut first_deny, mut first_allow) = (None, None);
    for r in &spec.rules {
        let caller_ok = if r.caller == "*" {
            true
        } else if r.caller.starts_with("arn:") {
            role.as_ref()
                .is_some_and(|a| naive_glob(r.caller.as_bytes(), a.as_bytes()))
        } else {
            caller_pbc.as_deref() == Some(r.caller.as_str())
        };
        let target_ok = r.target == "*" || r.target == q.target;
        let method_ok = r.methods.iter().any(|m| *m == "*" || *m == q.method);
        let path_ok = r
            .paths
            .iter()
            .any(|p| naive_path_match(&naive_pattern(p), &path));
        if caller_ok && target_ok && method_ok && path_ok && naive_conditions(r, q) {
            matched.push(r.id.clone());
            let slot = if r.deny {
                &mut first_deny
            } else {
                &mut first_allow
            };
            if slot.is_none() {
                *slot = Some(r.id.clone());
            }
        }
    }
    let s = match (first_deny, first_allow) {
        (Some(id), _) => Summary {
            deny: true,
            rule_id: Some(id),
            reason: NReason::ExplicitDeny,
            caller_pbc,
        },
        (None, Some(id)) => Summary {
            deny: false,
            rule_id: Some(id),
            reason: NReason::Allowed,
            caller_pbc,
        },
        (None, None) => Summary {
            deny: true,
            rule_id: None,
            reason: NReason::NoRuleMatched,
            caller_pbc,
        },
    };
    (s, matched)
}

// ---------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------

fn request_of(q: &ReqSpec) -> Request<'_> {
    Request {
        caller: match &q.caller {
            ReqCaller::Principal(arn) => Caller::Principal(arn),
            ReqCaller::Pbc(name) => Caller::Pbc(name),
        },
        target: q.target,
        method: q.method,
        path: &q.path,
        source_ip: q.source_ip,
        tags: &q.tags,
        now: q.now,
    }
}

fn check(spec: &FileSpec, requests: &[ReqSpec]) -> Result<(), TestCaseError> {
    let text = to_toml(spec);
    let rules = match Rules::parse(&text, "generated.toml") {
        Ok(r) => r,
        Err(d) => {
            let errors: Vec<String> = d.errors().map(ToString::to_string).collect();
            return Err(TestCaseError::fail(format!(
                "generated file refused:\n{}\n{text}",
                errors.join("\n")
            )));
        }
    };
    prop_assert_eq!(rules.rules().len(), spec.rules.len());
    for q in requests {
        let req = request_of(q);
        let fast = summarize(&rules.decide(&req));
        let explanation = rules.explain(&req);
        let slow = summarize(&explanation.decision);
        let (naive, naive_matched) = naive_decide(spec, q);
        let explained_matched: Vec<String> = explanation
            .steps
            .iter()
            .filter(|s| s.outcome == Outcome::Matched)
            .map(|s| s.rule.id.to_string())
            .collect();
        prop_assert_eq!(
            &fast,
            &slow,
            "decide vs explain\nrequest: {:?}\nfile:\n{}",
            q,
            text
        );
        prop_assert_eq!(
            &fast,
            &naive,
            "decide vs naive\nrequest: {:?}\nfile:\n{}",
            q,
            text
        );
        prop_assert_eq!(
            &explained_matched,
            &naive_matched,
            "explain's matched rules vs naive\nrequest: {:?}\nfile:\n{}",
            q,
            text
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    })]

    #[test]
    fn decide_explain_and_naive_agree(
        spec in file_spec(),
        requests in prop::collection::vec(request(), 64),
    ) {
        check(&spec, &requests)?;
    }
}

// ---------------------------------------------------------------------------
// Targeted semantics
// ---------------------------------------------------------------------------

const HEADER: &str = r#"
[[pbc]]
name = "checkout"
principals = ["arn:aws:iam::111:role/checkout"]

[[pbc]]
name = "order"
principals = ["arn:aws:iam::111:role/order"]
"#;

const CHECKOUT: &str = "arn:aws:sts::111:assumed-role/checkout/pod-1";

fn rules(body: &str) -> Rules {
    Rules::parse(&format!("{HEADER}\n{body}"), "test.toml").unwrap()
}

fn ask<'a>(caller: &'a str, method: &'a str, path: &'a str) -> Request<'a> {
    Request {
        caller: Caller::Principal(caller),
        target: "order",
        method,
        path,
        source_ip: None,
        tags: &[],
        now: 1_795_334_400,
    }
}

/// decide and explain agree; returns decide's answer.
fn both<'r>(rules: &'r Rules, req: &Request<'_>) -> Decision<'r> {
    let fast = rules.decide(req);
    assert_eq!(fast, rules.explain(req).decision, "{req:?}");
    fast
}

#[test]
fn deny_wins_over_allow_in_either_order() {
    let allow = r#"
[[allow]]
id = "allow-orders"
caller = "checkout"
target = "order"
methods = ["*"]
paths = ["/orders/**"]
"#;
    let deny = r#"
[[deny]]
id = "deny-admin"
caller = "*"
target = "*"
methods = ["POST"]
paths = ["/orders/admin"]
"#;
    for body in [format!("{allow}{deny}"), format!("{deny}{allow}")] {
        let r = rules(&body);
        let d = both(&r, &ask(CHECKOUT, "POST", "/orders/admin"));
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(d.reason, Reason::ExplicitDeny);
        assert_eq!(d.rule_id(), Some("deny-admin"));
        let d = both(&r, &ask(CHECKOUT, "GET", "/orders/admin"));
        assert!(d.is_allowed());
        assert_eq!(d.rule_id(), Some("allow-orders"));
    }
}

#[test]
fn default_deny_names_no_rule() {
    let r = rules(
        r#"
[[allow]]
id = "read-orders"
caller = "checkout"
target = "order"
methods = ["GET"]
paths = ["/orders/{id}"]
"#,
    );
    for req in [
        ask(CHECKOUT, "POST", "/orders/1"),
        ask(CHECKOUT, "GET", "/orders"),
        ask("arn:aws:iam::111:role/order", "GET", "/orders/1"),
        ask("arn:aws:iam::999:role/nobody", "GET", "/orders/1"),
    ] {
        let d = both(&r, &req);
        assert_eq!(d.effect, Effect::Deny, "{req:?}");
        assert_eq!(d.reason, Reason::NoRuleMatched, "{req:?}");
        assert_eq!(d.rule, None, "{req:?}");
    }
    assert_eq!(
        both(&r, &ask("arn:aws:iam::999:role/nobody", "GET", "/")).caller_pbc,
        None
    );
    assert_eq!(
        both(&r, &ask(CHECKOUT, "GET", "/")).caller_pbc,
        Some("checkout")
    );
}

#[test]
fn first_allow_in_file_order_is_named() {
    let r = rules(
        r#"
[[allow]]
id = "specific-later-in-trie"
caller = "checkout"
target = "order"
methods = ["GET"]
paths = ["/orders/1/lines"]

[[allow]]
id = "any-caller"
caller = "*"
target = "*"
methods = ["*"]
paths = ["/**"]

[[allow]]
id = "wildcard"
caller = "checkout"
target = "order"
methods = ["GET"]
paths = ["/orders/**"]
"#,
    );
    let d = both(&r, &ask(CHECKOUT, "GET", "/orders/1/lines"));
    assert_eq!(d.rule_id(), Some("specific-later-in-trie"));
    let d = both(&r, &ask(CHECKOUT, "GET", "/orders/2"));
    assert_eq!(d.rule_id(), Some("any-caller"));
}

#[test]
fn double_star_matches_zero_segments() {
    let r = rules(
        r#"
[[allow]]
id = "orders-tree"
caller = "checkout"
target = "order"
methods = ["GET"]
paths = ["/orders/**"]
"#,
    );
    for path in [
        "/orders",
        "/orders/",
        "/orders/1",
        "/orders/1/lines/2",
        "/x/../orders",
    ] {
        let d = both(&r, &ask(CHECKOUT, "GET", path));
        assert_eq!(d.rule_id(), Some("orders-tree"), "{path}");
    }
    for path in ["/", "/ordersx", "/order", "/orders/.."] {
        let d = both(&r, &ask(CHECKOUT, "GET", path));
        assert_eq!(d.reason, Reason::NoRuleMatched, "{path}");
    }
}

#[test]
fn a_conditional_deny_denies_only_when_its_conditions_hold() {
    let r = rules(
        r#"
[[allow]]
id = "orders"
caller = "checkout"
target = "order"
methods = ["*"]
paths = ["/orders/**"]

[[deny]]
id = "outside-the-mesh"
caller = "*"
target = "order"
methods = ["*"]
paths = ["/orders/**"]
not_source_cidrs = ["10.0.0.0/8"]

[[deny]]
id = "frozen-team"
caller = "*"
target = "order"
methods = ["POST"]
paths = ["/orders"]
principal_tags = { team = "frozen" }

[[deny]]
id = "change-freeze"
caller = "*"
target = "order"
methods = ["DELETE"]
paths = ["/orders/*"]
time = { not_before = "2026-12-20", not_after = "2027-01-05" }
"#,
    );
    let inside: IpAddr = "10.1.2.3".parse().unwrap();
    let outside: IpAddr = "8.8.8.8".parse().unwrap();
    let at = |ip, tags, now, method, path| Request {
        source_ip: ip,
        tags,
        now,
        ..ask(CHECKOUT, method, path)
    };
    let nov = 1_795_334_400; // 2026-11-22T08:00:00Z
    let christmas = 1_798_185_600; // 2026-12-25T00:00:00Z
    let frozen: &[(&str, &str)] = &[("Team", "frozen")];
    let other: &[(&str, &str)] = &[("team", "payments")];
    let cases: [(Request<'_>, Option<&str>); 8] = [
        (at(Some(inside), other, nov, "GET", "/orders/1"), None),
        // An unknown source address is in no range, so `not_source_cidrs`
        // holds and the deny applies (fail closed).
        (
            at(None, other, nov, "GET", "/orders/1"),
            Some("outside-the-mesh"),
        ),
        (
            at(Some(outside), other, nov, "GET", "/orders/1"),
            Some("outside-the-mesh"),
        ),
        (at(Some(inside), other, nov, "POST", "/orders"), None),
        (
            at(Some(inside), frozen, nov, "POST", "/orders"),
            Some("frozen-team"),
        ),
        (at(Some(inside), frozen, nov, "GET", "/orders"), None),
        (at(Some(inside), other, nov, "DELETE", "/orders/1"), None),
        (
            at(Some(inside), other, christmas, "DELETE", "/orders/1"),
            Some("change-freeze"),
        ),
    ];
    for (req, deny) in cases {
        let d = both(&r, &req);
        match deny {
            Some(id) => {
                assert_eq!(d.reason, Reason::ExplicitDeny, "{req:?}");
                assert_eq!(d.rule_id(), Some(id), "{req:?}");
            }
            None => {
                assert!(d.is_allowed(), "{req:?}: {d}");
                assert_eq!(d.rule_id(), Some("orders"), "{req:?}");
            }
        }
    }
}

#[test]
fn naive_helpers_behave() {
    assert!(naive_glob(b"a*b?", b"axxbc"));
    assert!(!naive_glob(b"a*b?", b"axxb"));
    assert!(naive_glob(b"*", b""));
    assert_eq!(
        naive_role("arn:aws:sts::1:assumed-role/r/s"),
        "arn:aws:iam::1:role/r"
    );
    assert_eq!(
        naive_role("arn:aws:sts::1:assumed-role/r"),
        "arn:aws:sts::1:assumed-role/r"
    );
    assert_eq!(
        naive_normalize("/a//./%61/../b/"),
        Ok(vec![b"a".to_vec(), b"b".to_vec()])
    );
    assert_eq!(naive_normalize("/a%2Fb"), Err(NPathErr::Ambiguous));
    assert_eq!(naive_normalize("/a%zz"), Err(NPathErr::BadEscape));
    // 2026-11-22T08:00:00Z is a Sunday.
    let sunday = TimeSpec {
        not_before: None,
        not_after: None,
        days: Some(vec!["Sunday"]),
        hours: Some((7 * 60, 9 * 60)),
    };
    assert!(naive_time(&sunday, 1_795_334_400));
    assert!(!naive_time(&sunday, 1_795_334_400 + 86_400));
    assert!(naive_cidr_contains(
        "10.0.0.0/8",
        "::ffff:10.1.2.3".parse().unwrap()
    ));
}
