//! The compiled allow matrix: rules indexed by (caller, target), each cell a
//! trie of path segments, so a decision touches only the rules that could
//! apply to it.
//!
//! Callers are keyed three ways: by PBC, by each role-ARN pattern that rules
//! name as a caller (a "group"), and `*`. Targets by PBC and `*`. A request
//! visits at most (1 + its groups + 1) x 2 cells. Wildcard rules live in the
//! `*` row and column once instead of being copied into every cell.

use crate::decide::{Caller, Decision, Reason, Request};
use crate::method::Methods;
use crate::path::{NormalPath, Segment};
use crate::principal::{ArnPattern, glob_match, principal_role};
use crate::rules::{CallerSpec, Effect, Pbc, Rule, Rules, TargetSpec};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;

const NONE: u32 = u32::MAX;

/// How a PBC pattern ranks against others matching the same principal:
/// exact before glob, then more literal characters, then earlier in the file.
type Rank = (bool, usize, std::cmp::Reverse<usize>);

/// Whose pattern a principal pattern is.
#[derive(Clone, Copy, Debug)]
enum Owner {
    /// The n-th PBC; `rank` orders competing matches (higher wins).
    Pbc {
        pbc: u32,
        rank: (bool, usize, std::cmp::Reverse<usize>),
    },
    /// The n-th role-ARN caller group.
    Group(u32),
}

#[derive(Debug)]
struct PatternEntry {
    pattern: ArnPattern,
    owner: Owner,
}

/// A byte trie over the literal prefixes of wildcard patterns.
#[derive(Debug, Default)]
struct PrefixTrie {
    nodes: Vec<PrefixNode>,
}

#[derive(Debug, Default)]
struct PrefixNode {
    children: Vec<(u8, u32)>,
    patterns: Vec<u32>,
}

impl PrefixTrie {
    fn insert(&mut self, prefix: &[u8], id: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(PrefixNode::default());
        }
        let mut node = 0usize;
        for &b in prefix {
            let next = self.nodes.get(node).and_then(|n| {
                n.children
                    .binary_search_by_key(&b, |c| c.0)
                    .ok()
                    .and_then(|i| n.children.get(i))
                    .map(|c| c.1 as usize)
            });
            node = match next {
                Some(n) => n,
                None => {
                    let new = self.nodes.len();
                    self.nodes.push(PrefixNode::default());
                    if let Some(n) = self.nodes.get_mut(node) {
                        let at = n.children.partition_point(|c| c.0 < b);
                        n.children.insert(at, (b, new as u32));
                    }
                    new
                }
            };
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.patterns.push(id);
        }
    }

    /// Calls `f` with every pattern whose prefix is a prefix of `text`, and
    /// the length of that prefix.
    fn prefixes_of(&self, text: &[u8], mut f: impl FnMut(u32, usize)) {
        let mut node = 0usize;
        let mut depth = 0usize;
        loop {
            let Some(n) = self.nodes.get(node) else {
                return;
            };
            for &id in &n.patterns {
                f(id, depth);
            }
            let Some(&b) = text.get(depth) else { return };
            match n.children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => {
                    node = n.children.get(i).map_or(usize::MAX, |c| c.1 as usize);
                    depth += 1;
                }
                Err(_) => return,
            }
        }
    }
}

/// One rule's entry at a path-trie node.
#[derive(Clone, Copy, Debug)]
struct Entry {
    rule: u32,
    methods: Methods,
    deny: bool,
    conditional: bool,
}

#[derive(Debug, Default)]
struct PathNode {
    literals: Vec<(Box<[u8]>, u32)>,
    one: u32,
    /// Rules whose pattern ends here.
    here: Vec<Entry>,
    /// Rules whose pattern ends with `**` here.
    rest: Vec<Entry>,
}

/// The path trie of one cell.
#[derive(Debug)]
struct PathTrie {
    nodes: Vec<PathNode>,
}

impl PathTrie {
    fn new() -> Self {
        Self {
            nodes: vec![PathNode {
                one: NONE,
                ..PathNode::default()
            }],
        }
    }

    fn child(&mut self, node: usize, seg: &Segment) -> usize {
        let existing = self.nodes.get(node).and_then(|n| match seg {
            Segment::Literal(lit) => n
                .literals
                .binary_search_by(|c| (*c.0).cmp(lit))
                .ok()
                .and_then(|i| n.literals.get(i))
                .map(|c| c.1),
            _ => Some(n.one).filter(|&o| o != NONE),
        });
        if let Some(id) = existing {
            return id as usize;
        }
        let new = self.nodes.len();
        self.nodes.push(PathNode {
            one: NONE,
            ..PathNode::default()
        });
        if let Some(n) = self.nodes.get_mut(node) {
            match seg {
                Segment::Literal(lit) => {
                    let at = n.literals.partition_point(|c| *c.0 < **lit);
                    n.literals.insert(at, (lit.clone(), new as u32));
                }
                _ => n.one = new as u32,
            }
        }
        new
    }

    fn insert(&mut self, segments: &[Segment], entry: Entry) {
        let mut node = 0usize;
        for seg in segments {
            if matches!(seg, Segment::Rest) {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.rest.push(entry);
                }
                return;
            }
            node = self.child(node, seg);
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.here.push(entry);
        }
    }

    fn visit(&self, node: u32, segs: &[Cow<'_, [u8]>], f: &mut impl FnMut(&Entry)) {
        let Some(n) = self.nodes.get(node as usize) else {
            return;
        };
        n.rest.iter().for_each(&mut *f);
        let Some((first, rest)) = segs.split_first() else {
            n.here.iter().for_each(f);
            return;
        };
        if let Ok(i) = n.literals.binary_search_by(|c| (*c.0).cmp(first))
            && let Some(&(_, child)) = n.literals.get(i)
        {
            self.visit(child, rest, f);
        }
        if n.one != NONE {
            self.visit(n.one, rest, f);
        }
    }
}

/// The compiled matrix.
#[derive(Debug)]
pub(crate) struct Matrix {
    patterns: Vec<PatternEntry>,
    literal: HashMap<Box<str>, SmallVec<[u32; 2]>>,
    globs: PrefixTrie,
    n_pbc: usize,
    /// Target columns: one per PBC, then `*`.
    width: usize,
    /// (caller key * width + target key) -> index into `tries`, or NONE.
    cells: Vec<u32>,
    tries: Vec<PathTrie>,
}

impl Matrix {
    pub(crate) fn compile(pbcs: &[Pbc], rules: &[Rule]) -> Matrix {
        let n_pbc = pbcs.len();
        let mut patterns = Vec::new();
        let mut order = 0usize;
        for (i, pbc) in pbcs.iter().enumerate() {
            for pat in &pbc.principals {
                let rank = (
                    pat.is_literal(),
                    pat.specificity(),
                    std::cmp::Reverse(order),
                );
                order += 1;
                patterns.push(PatternEntry {
                    pattern: pat.clone(),
                    owner: Owner::Pbc {
                        pbc: i as u32,
                        rank,
                    },
                });
            }
        }
        let mut groups: HashMap<&ArnPattern, u32> = HashMap::new();
        for rule in rules {
            if let CallerSpec::Principal(pat) = &rule.caller
                && !groups.contains_key(pat)
            {
                let g = groups.len() as u32;
                groups.insert(pat, g);
                patterns.push(PatternEntry {
                    pattern: pat.clone(),
                    owner: Owner::Group(g),
                });
            }
        }
        let mut literal: HashMap<Box<str>, SmallVec<[u32; 2]>> = HashMap::new();
        let mut globs = PrefixTrie::default();
        for (id, entry) in patterns.iter().enumerate() {
            if entry.pattern.is_literal() {
                literal
                    .entry(entry.pattern.as_str().into())
                    .or_default()
                    .push(id as u32);
            } else {
                globs.insert(entry.pattern.literal_prefix().as_bytes(), id as u32);
            }
        }
        let width = n_pbc + 1;
        let height = n_pbc + groups.len() + 1;
        let mut cells = vec![NONE; width * height];
        let mut tries: Vec<PathTrie> = Vec::new();
        for (idx, rule) in rules.iter().enumerate() {
            let row = match &rule.caller {
                CallerSpec::Pbc(i) => *i,
                CallerSpec::Principal(p) => n_pbc + groups.get(p).copied().unwrap_or(0) as usize,
                CallerSpec::Any => height - 1,
            };
            let col = match rule.target {
                TargetSpec::Pbc(i) => i,
                TargetSpec::Any => n_pbc,
            };
            let Some(cell) = cells.get_mut(row * width + col) else {
                continue;
            };
            if *cell == NONE {
                *cell = tries.len() as u32;
                tries.push(PathTrie::new());
            }
            let Some(trie) = tries.get_mut(*cell as usize) else {
                continue;
            };
            let entry = Entry {
                rule: idx as u32,
                methods: rule.methods,
                deny: rule.effect == Effect::Deny,
                conditional: !rule.conditions.is_empty(),
            };
            for path in &rule.paths {
                trie.insert(path.segments(), entry);
            }
        }
        Matrix {
            patterns,
            literal,
            globs,
            n_pbc,
            width,
            cells,
            tries,
        }
    }

    /// The caller's PBC (best-ranked matching pattern) and groups.
    fn resolve(&self, arn: &str) -> (Option<u32>, SmallVec<[u32; 4]>) {
        let mut best: Option<(u32, Rank)> = None;
        let mut groups = SmallVec::new();
        let mut take = |id: u32| match self.patterns.get(id as usize).map(|p| p.owner) {
            Some(Owner::Pbc { pbc, rank }) if best.is_none_or(|(_, r)| rank > r) => {
                best = Some((pbc, rank));
            }
            Some(Owner::Pbc { .. }) => {}
            Some(Owner::Group(g)) => groups.push(g),
            None => {}
        };
        if let Some(ids) = self.literal.get(arn) {
            ids.iter().for_each(|&id| take(id));
        }
        self.globs.prefixes_of(arn.as_bytes(), |id, depth| {
            let matches = self.patterns.get(id as usize).is_some_and(|p| {
                let pat = p.pattern.as_str().as_bytes();
                match (pat.get(depth..), arn.as_bytes().get(depth..)) {
                    (Some(ps), Some(ts)) => glob_match(ps, ts),
                    _ => false,
                }
            });
            if matches {
                take(id);
            }
        });
        (best.map(|b| b.0), groups)
    }

    pub(crate) fn resolve_pbc(&self, principal: &str) -> Option<usize> {
        self.resolve(&principal_role(principal))
            .0
            .map(|i| i as usize)
    }

    pub(crate) fn decide<'r>(&self, rules: &'r Rules, req: &Request<'_>) -> Decision<'r> {
        let (pbc, groups) = match req.caller {
            Caller::Pbc(name) => (rules.pbc(name).map(|i| i as u32), SmallVec::new()),
            Caller::Principal(arn) => self.resolve(&principal_role(arn)),
        };
        let caller_pbc = pbc
            .and_then(|i| rules.pbcs().get(i as usize))
            .map(|p| &*p.name);
        let path = match NormalPath::parse(req.path) {
            Ok(p) => p,
            Err(e) => {
                return Decision {
                    effect: Effect::Deny,
                    rule: None,
                    reason: Reason::BadPath(e),
                    caller_pbc,
                };
            }
        };
        let method = Methods::of(req.method);
        let height = self.cells.len() / self.width.max(1);
        let mut rows: SmallVec<[usize; 6]> = SmallVec::new();
        if let Some(p) = pbc {
            rows.push(p as usize);
        }
        rows.extend(groups.iter().map(|&g| self.n_pbc + g as usize));
        rows.push(height - 1);
        let mut cols: SmallVec<[usize; 2]> = SmallVec::new();
        if let Some(t) = rules.pbc(req.target) {
            cols.push(t);
        }
        cols.push(self.n_pbc);

        let all = rules.rules();
        let (mut deny, mut allow) = (NONE, NONE);
        let mut consider = |e: &Entry| {
            let best = if e.deny { &mut deny } else { &mut allow };
            if e.rule < *best
                && e.methods.intersects(method)
                && (!e.conditional
                    || all
                        .get(e.rule as usize)
                        .is_some_and(|r| r.conditions.hold(req)))
            {
                *best = e.rule;
            }
        };
        for &row in &rows {
            for &col in &cols {
                let cell = self
                    .cells
                    .get(row * self.width + col)
                    .copied()
                    .unwrap_or(NONE);
                if let Some(trie) = self.tries.get(cell as usize) {
                    trie.visit(0, path.segments(), &mut consider);
                }
            }
        }
        let (effect, rule, reason) = if deny != NONE {
            (Effect::Deny, all.get(deny as usize), Reason::ExplicitDeny)
        } else if allow != NONE {
            (Effect::Allow, all.get(allow as usize), Reason::Allowed)
        } else {
            (Effect::Deny, None, Reason::NoRuleMatched)
        };
        Decision {
            effect,
            rule,
            reason,
            caller_pbc,
        }
    }
}
