//! Path patterns: `/exact` (with or without a trailing slash), `/prefix/*` (the prefix itself
//! and anything below), `/users/:id` (one segment, captured; a trailing slash too), `/*`
//! (everything), path-to-regexp expressions as Next.js matchers write them (`/about/:path*`,
//! `/((?!api|_next/static).*)`: see [`path_expr`](super::path_expr)), and regular expressions
//! written as `re:^/api/(v1|v2)/`. A [`Matcher`] is a set of patterns with optional exclusions
//! (`exclude=[...]`). Compiled once when the plan is built.

use regex::Regex;

use super::path_expr::{self, PathExpr};
use crate::error::{Error, Result};

/// One segment of a `/users/:id` pattern.
#[derive(Debug, Clone)]
pub enum Seg {
    /// A literal segment.
    Lit(String),
    /// A `:name` parameter.
    Param(String),
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Every path.
    All,
    /// Exactly this path.
    Exact(String),
    /// This path and everything below it.
    Prefix(String),
    /// Segments with `:name` parameters (and an optional trailing `*`).
    Segments(Vec<Seg>, bool),
    /// A regular expression (`re:` prefix).
    Regex(Regex),
    /// A path-to-regexp expression, or a regex with a leading look-ahead (and its source, to
    /// fold its case).
    Expr(Box<PathExpr>, String),
    /// The inner pattern, its literals matched without regard to ASCII case
    /// (`case_insensitive_paths`); parameters keep the path's own case.
    Folded(Box<Pattern>),
}

impl Pattern {
    /// Compiles one pattern.
    pub fn new(p: &str) -> Result<Pattern> {
        if let Some(re) = p.strip_prefix("re:") {
            if re.contains("(?!") {
                return Ok(Pattern::Expr(
                    Box::new(path_expr::compile_regex(p, re, false)?),
                    p.to_owned(),
                ));
            }
            return Regex::new(re)
                .map(Pattern::Regex)
                .map_err(|e| Error::config(format!("invalid path regex {p:?}: {e}")));
        }
        if !p.starts_with('/') {
            return Err(Error::config(format!(
                "path pattern {p:?} must start with / (or re: for a regex)"
            )));
        }
        if p == "/*" {
            return Ok(Pattern::All);
        }
        if path_expr::is_expr(p) {
            return Ok(Pattern::Expr(Box::new(path_expr::compile(p, false)?), p.to_owned()));
        }
        let (body, star) = match p.strip_suffix("/*") {
            Some(b) => (b, true),
            None => (p, false),
        };
        if body.contains('*') {
            return Err(Error::config(format!(
                "path pattern {p:?}: * is only allowed as a final /*"
            )));
        }
        if !body.contains("/:") {
            return Ok(if star {
                Pattern::Prefix(body.to_owned())
            } else {
                Pattern::Exact(body.to_owned())
            });
        }
        let segs = body
            .split('/')
            .skip(1)
            .map(|s| match s.strip_prefix(':') {
                Some(name) if !name.is_empty() => Ok(Seg::Param(name.to_owned())),
                Some(_) => Err(Error::config(format!("path pattern {p:?} has an unnamed parameter"))),
                None => Ok(Seg::Lit(s.to_owned())),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pattern::Segments(segs, star))
    }

    /// This pattern, matching without regard to ASCII case (a regex gains `(?i)`).
    pub fn fold_case(&mut self) -> Result<()> {
        let folded = match std::mem::replace(self, Pattern::All) {
            Pattern::Regex(r) => Pattern::Regex(
                Regex::new(&format!("(?i){}", r.as_str()))
                    .map_err(|e| Error::config(format!("invalid path regex {:?}: {e}", r.as_str())))?,
            ),
            Pattern::Expr(_, src) => {
                let expr = match src.strip_prefix("re:") {
                    Some(re) => path_expr::compile_regex(&src, re, true)?,
                    None => path_expr::compile(&src, true)?,
                };
                Pattern::Expr(Box::new(expr), src)
            }
            p @ (Pattern::All | Pattern::Folded(_)) => p,
            p => Pattern::Folded(Box::new(p)),
        };
        *self = folded;
        Ok(())
    }

    /// Whether `path` matches; captured parameters are appended to `params`.
    pub fn matches(&self, path: &str, params: &mut Vec<(String, String)>) -> bool {
        self.matches_with(path, params, false)
    }

    fn matches_with(&self, path: &str, params: &mut Vec<(String, String)>, fold: bool) -> bool {
        let same = |a: &str, b: &str| if fold { a.eq_ignore_ascii_case(b) } else { a == b };
        match self {
            Pattern::All => true,
            Pattern::Folded(inner) => inner.matches_with(path, params, true),
            // With or without one trailing slash: origins commonly route `/login/` to `/login`
            // (or redirect it there), so a policy on one covers the other.
            Pattern::Exact(e) => same(path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path), e),
            Pattern::Prefix(pre) => {
                path.get(..pre.len()).is_some_and(|head| same(head, pre)) && {
                    let rest = &path[pre.len()..];
                    rest.is_empty() || rest.starts_with('/')
                }
            }
            Pattern::Regex(r) => r.is_match(path),
            Pattern::Expr(e, _) => e.matches(path, params),
            Pattern::Segments(segs, star) => {
                let mut parts = path.split('/').skip(1);
                let start = params.len();
                for seg in segs {
                    let ok = match (seg, parts.next()) {
                        (Seg::Lit(l), Some(p)) => same(l, p),
                        (Seg::Param(name), Some(p)) if !p.is_empty() => {
                            params.push((name.clone(), p.to_owned()));
                            true
                        }
                        _ => false,
                    };
                    if !ok {
                        params.truncate(start);
                        return false;
                    }
                }
                if *star || matches!(parts.next(), None | Some("")) && parts.next().is_none() {
                    true
                } else {
                    params.truncate(start);
                    false
                }
            }
        }
    }

    /// Whether every path this pattern matches is also matched by `other` (for shadowing checks).
    pub fn shadowed_by(&self, other: &Pattern) -> bool {
        match (other, self) {
            (Pattern::All, _) => true,
            (Pattern::Prefix(o), Pattern::Exact(s) | Pattern::Prefix(s)) => {
                s == o || s.strip_prefix(o.as_str()).is_some_and(|r| r.starts_with('/'))
            }
            (Pattern::Exact(o), Pattern::Exact(s)) => o == s,
            _ => false,
        }
    }
}

/// A set of patterns, less a set of exclusions: matches when any pattern does and no exclusion
/// does.
#[derive(Debug, Clone)]
pub struct Matcher {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

fn compile_all<S: AsRef<str>>(patterns: &[S]) -> Result<Vec<Pattern>> {
    patterns.iter().map(|p| Pattern::new(p.as_ref())).collect()
}

impl Matcher {
    /// Compiles patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher> {
        Matcher::excluding(patterns, &[] as &[&str])
    }

    /// Compiles patterns and the exclusions that take paths back out of them.
    pub fn excluding<S: AsRef<str>, T: AsRef<str>>(patterns: &[S], exclude: &[T]) -> Result<Matcher> {
        if patterns.is_empty() {
            return Err(Error::config("paths must name at least one pattern"));
        }
        Ok(Matcher {
            include: compile_all(patterns)?,
            exclude: compile_all(exclude).map_err(|e| Error::config(format!("exclude: {}", e.context)))?,
        })
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let mut scratch = Vec::new();
        self.include.iter().any(|p| p.matches(path, &mut scratch)) && !self.excluded(path)
    }

    fn excluded(&self, path: &str) -> bool {
        !self.exclude.is_empty() && self.exclude.iter().any(|p| p.matches(path, &mut Vec::new()))
    }

    /// Whether `path` matches; parameters of the first matching pattern are captured.
    pub fn matches_capture(&self, path: &str, params: &mut Vec<(String, String)>) -> bool {
        let start = params.len();
        if self.include.iter().any(|p| p.matches(path, params)) && !self.excluded(path) {
            return true;
        }
        params.truncate(start);
        false
    }

    /// Every pattern, matching without regard to ASCII case.
    pub fn fold_case(&mut self) -> Result<()> {
        self.include
            .iter_mut()
            .chain(&mut self.exclude)
            .try_for_each(Pattern::fold_case)
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.include
    }

    /// Whether every path this matcher matches is already matched by `earlier`.
    pub fn shadowed_by(&self, earlier: &Matcher) -> bool {
        earlier.exclude.is_empty()
            && self
                .include
                .iter()
                .all(|p| earlier.include.iter().any(|e| p.shadowed_by(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        Pattern::new(p).unwrap().matches(path, &mut params).then_some(params)
    }

    #[test]
    fn forms() {
        assert!(m("/a", "/a").is_some() && m("/a", "/a/b").is_none());
        assert!(m("/a", "/a/").is_some() && m("/a", "/a//").is_none() && m("/", "/").is_some());
        assert!(m("/users/:id", "/users/42/").is_some() && m("/users/:id", "/users/42/x/").is_none());
        assert!(m("/a/*", "/a").is_some() && m("/a/*", "/a/b/c").is_some() && m("/a/*", "/ab").is_none());
        assert!(m("/*", "/anything").is_some());
        assert_eq!(m("/users/:id", "/users/42"), Some(vec![("id".into(), "42".into())]));
        assert!(m("/users/:id", "/users/42/x").is_none() && m("/users/:id", "/users/").is_none());
        assert_eq!(m("/u/:id/*", "/u/7/files/x").unwrap()[0].1, "7");
        assert!(m("re:^/api/v[12]/", "/api/v2/x").is_some());
        assert!(Pattern::new("a").is_err() && Pattern::new("/a*b").is_err() && Pattern::new("re:(").is_err());
    }

    #[test]
    fn folded_patterns_ignore_case_and_keep_the_parameters_case() {
        let folded = |p: &str| {
            let mut p = Pattern::new(p).unwrap();
            p.fold_case().unwrap();
            p
        };
        let mut params = Vec::new();
        assert!(folded("/login").matches("/LOGIN", &mut params) && folded("/login").matches("/Login/", &mut params));
        assert!(folded("/api/*").matches("/API/x", &mut params) && !folded("/api/*").matches("/APIx", &mut params));
        assert!(folded("re:^/admin").matches("/ADMIN/x", &mut params));
        assert!(folded("/users/:name").matches("/USERS/Bob", &mut params));
        assert_eq!(params, [("name".to_owned(), "Bob".to_owned())]);
        // Multi-byte paths: the prefix slice is checked on a character boundary.
        assert!(!folded("/ab/*").matches("/é", &mut params));
        assert!(!Pattern::new("/login").unwrap().matches("/LOGIN", &mut params));
    }

    #[test]
    fn exclusions_take_paths_back_out() {
        let m = Matcher::excluding(&["/*"], &["/api/*", "/_next/static/*", "/favicon.ico"]).unwrap();
        assert!(m.matches("/") && m.matches("/shop/x") && m.matches("/apix"));
        assert!(!m.matches("/api") && !m.matches("/api/x") && !m.matches("/favicon.ico"));
        let earlier = Matcher::excluding(&["/*"], &["/api/*"]).unwrap();
        assert!(!Matcher::new(&["/api/x"]).unwrap().shadowed_by(&earlier));
        assert!(Matcher::excluding(&["/*"], &["/a("])
            .unwrap_err()
            .context
            .starts_with("exclude:"));
        let mut params = Vec::new();
        let m = Matcher::excluding(&["/u/:id"], &["/u/admin"]).unwrap();
        assert!(!m.matches_capture("/u/admin", &mut params) && params.is_empty());
        assert!(m.matches_capture("/u/bob", &mut params) && params.len() == 1);
    }

    #[test]
    fn shadowing() {
        let p = |s| Pattern::new(s).unwrap();
        assert!(p("/api/x").shadowed_by(&p("/api/*")));
        assert!(p("/api/*").shadowed_by(&p("/*")));
        assert!(!p("/apix").shadowed_by(&p("/api/*")));
    }
}
