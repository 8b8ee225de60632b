//! Path patterns as Next.js and Express write them (path-to-regexp): `:name`, `:name?`,
//! `:name*`, `:name+`, `:name(\d+)`, `(...)` groups, `\` escapes, and the negative look-ahead
//! that Next.js matchers use to exclude paths (`/((?!api|_next/static|favicon.ico).*)`).
//!
//! Everything compiles to the `regex` crate, which guarantees linear-time matching and has no
//! look-around. A look-ahead at a fixed position — after literal text only, at the start of a
//! group — is compiled into an include/exclude pair: `/((?!api|_next).*)` matches what
//! `^/(.*)$` matches unless `^/(?:api|_next)` also matches. A look-ahead anywhere else (after a
//! parameter, inside a repeated group), a look-behind or a positive look-ahead has no such
//! reading and is refused with an error that says so.

use regex::Regex;

use crate::error::{Error, Result};

/// A compiled path expression.
#[derive(Debug, Clone)]
pub struct PathExpr {
    /// What must match (anchored at both ends; named groups are the parameters).
    pub include: Regex,
    /// What, matched at the start of the path, excludes it (from a look-ahead).
    pub exclude: Option<Regex>,
    /// Whether `include` captures parameters.
    pub has_params: bool,
}

impl PathExpr {
    /// Whether `path` matches; captured parameters are appended to `params`.
    pub fn matches(&self, path: &str, params: &mut Vec<(String, String)>) -> bool {
        if self.exclude.as_ref().is_some_and(|x| x.is_match(path)) {
            return false;
        }
        if !self.has_params {
            return self.include.is_match(path);
        }
        let Some(caps) = self.include.captures(path) else {
            return false;
        };
        for name in self.include.capture_names().flatten() {
            if let Some(m) = caps.name(name) {
                params.push((name.to_owned(), m.as_str().to_owned()));
            }
        }
        true
    }
}

/// Whether `p` needs this module (anything beyond `/exact`, `/prefix/*` and `/a/:b`).
pub fn is_expr(p: &str) -> bool {
    let body = p.strip_suffix("/*").unwrap_or(p);
    body.contains(['(', ')', '?', '+', '*', '{', '}', '\\'])
}

fn refuse(p: &str, why: &str) -> Error {
    Error::config(format!("path pattern {p:?}: {why}"))
}

/// Compiles a path-to-regexp pattern; `fold` matches literals without regard to ASCII case.
pub fn compile(p: &str, fold: bool) -> Result<PathExpr> {
    let (include, exclude) = translate(p)?;
    build(p, &include, exclude.as_deref(), fold)
}

/// Compiles a `re:` regular expression, with the same reading of a leading look-ahead.
pub fn compile_regex(p: &str, re: &str, fold: bool) -> Result<PathExpr> {
    let Some(at) = re.find("(?!") else {
        return build(p, re, None, fold);
    };
    let before = &re[..at];
    let fixed = before.strip_prefix('^').is_some_and(is_plain_literal);
    if !fixed {
        return Err(refuse(
            p,
            "a negative look-ahead is supported only right after literal text anchored with ^ \
             (as in re:^/(?!api/))",
        ));
    }
    let (inner, end) = group_body(p, re, at + 3)?;
    let include = format!("{before}{}", &re[end + 1..]);
    let exclude = format!("{before}(?:{inner})");
    build(p, &include, Some(&exclude), fold)
}

fn is_plain_literal(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if !chars.next().is_some_and(|e| e.is_ascii_punctuation()) => return false,
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => return false,
            _ => {}
        }
    }
    true
}

fn build(p: &str, include: &str, exclude: Option<&str>, fold: bool) -> Result<PathExpr> {
    if include.contains("(?=") || include.contains("(?<=") || include.contains("(?<!") || include.contains("(?!") {
        return Err(refuse(
            p,
            "look-around other than one leading negative look-ahead cannot be matched in linear \
             time; write the exclusion as exclude=[...]",
        ));
    }
    let flags = if fold { "(?i)" } else { "" };
    let compile =
        |src: &str| Regex::new(&format!("{flags}{src}")).map_err(|e| refuse(p, &format!("does not compile: {e}")));
    let include = compile(include)?;
    let exclude = exclude.map(compile).transpose()?;
    let has_params = include.capture_names().flatten().next().is_some();
    Ok(PathExpr {
        include,
        exclude,
        has_params,
    })
}

/// The body of a group whose content starts at `start` (just after its opening), and the index
/// of its closing parenthesis.
fn group_body<'a>(p: &str, src: &'a str, start: usize) -> Result<(&'a str, usize)> {
    let bytes = src.as_bytes();
    let (mut depth, mut i, mut class) = (1usize, start, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' if !class => class = true,
            b']' if class => class = false,
            b'(' if !class => depth += 1,
            b')' if !class => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&src[start..i], i));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(refuse(p, "unbalanced parentheses"))
}

/// The translation under way: the regex so far, and what a look-ahead needs to know.
struct Translation<'p> {
    pattern: &'p str,
    out: String,
    /// The literal text so far, while nothing but literal text has been seen.
    literal: Option<String>,
    exclude: Option<String>,
    /// A '/' waiting to become the prefix of a parameter or group that follows it.
    pending_slash: bool,
}

impl Translation<'_> {
    fn flush_slash(&mut self) {
        if std::mem::take(&mut self.pending_slash) {
            self.out.push('/');
            if let Some(l) = self.literal.as_mut() {
                l.push('/');
            }
        }
    }

    fn literal_char(&mut self, ch: char) {
        self.flush_slash();
        self.out.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4])));
        if let Some(l) = self.literal.as_mut() {
            l.push(ch);
        }
    }

    /// A parameter or group: `name` (None for an unnamed group), its own regex, its modifier.
    fn group(&mut self, name: Option<&str>, custom: Option<String>, modifier: Option<char>) -> Result<()> {
        let p = self.pattern;
        let prefix = if std::mem::take(&mut self.pending_slash) {
            "/"
        } else {
            ""
        };
        let mut body = custom.unwrap_or_else(|| "[^/]+".to_owned());
        if let Some(rest) = body.strip_prefix("(?!") {
            let (Some(lit), None) = (self.literal.as_ref(), modifier) else {
                return Err(refuse(
                    p,
                    "a negative look-ahead is supported only in a group that follows literal text \
                     (as in /((?!api|_next/static).*)); write other exclusions as exclude=[...]",
                ));
            };
            let (inner, end) = group_body(p, rest, 0)?;
            self.exclude = Some(format!("^{}{prefix}(?:{inner})", regex::escape(lit)));
            body = rest[end + 1..].to_owned();
        }
        let capture = |inner: String| match name {
            Some(n) => format!("(?P<{n}>{inner})"),
            None => format!("(?:{inner})"),
        };
        self.out.push_str(&match modifier {
            None => format!("{prefix}{}", capture(body)),
            Some('?') => format!("(?:{prefix}{})?", capture(body)),
            Some(m) => {
                let repeated = capture(format!("(?:{body})(?:{prefix}(?:{body}))*"));
                if m == '*' {
                    format!("(?:{prefix}{repeated})?")
                } else {
                    format!("{prefix}{repeated}")
                }
            }
        });
        self.literal = None;
        Ok(())
    }

    /// The anchored regex: a trailing slash is optional, as for the plain patterns.
    fn finish(mut self) -> (String, Option<String>) {
        if self.pending_slash {
            self.out.push('/');
            if self.out != "^/" {
                self.out.push('?');
            }
        } else {
            self.out.push_str("/?");
        }
        self.out.push('$');
        (self.out, self.exclude)
    }
}

/// A parameter's name, its own regex and its modifier, and the index after them.
type GroupParts = (Option<String>, Option<String>, Option<char>, usize);

/// Reads `:name`, an optional `(regex)` and an optional modifier starting at `chars[i]`.
fn read_group(p: &str, chars: &[char], mut i: usize) -> Result<GroupParts> {
    let mut name = None;
    if chars[i] == ':' {
        let start = i + 1;
        i = start;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i == start {
            return Err(refuse(p, "a parameter needs a name (:name)"));
        }
        name = Some(chars[start..i].iter().collect::<String>());
    }
    let mut custom = None;
    if chars.get(i) == Some(&'(') {
        let src: String = chars[i + 1..].iter().collect();
        let (body, _) = group_body(p, &src, 0)?;
        i += 1 + body.chars().count() + 1;
        custom = Some(body.to_owned());
    }
    let modifier = match chars.get(i) {
        Some(m @ ('?' | '*' | '+')) => {
            i += 1;
            Some(*m)
        }
        _ => None,
    };
    Ok((name, custom, modifier, i))
}

/// The include regex (anchored) and, for a leading look-ahead, the exclude regex.
fn translate(p: &str) -> Result<(String, Option<String>)> {
    if !p.starts_with('/') {
        return Err(refuse(p, "must start with / (or re: for a regex)"));
    }
    let mut t = Translation {
        pattern: p,
        out: String::from("^"),
        literal: Some(String::new()),
        exclude: None,
        pending_slash: false,
    };
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' => {
                t.flush_slash();
                t.pending_slash = true;
                i += 1;
            }
            ':' | '(' => {
                let (name, custom, modifier, next) = read_group(p, &chars, i)?;
                t.group(name.as_deref(), custom, modifier)?;
                i = next;
            }
            '*' if i + 1 == chars.len() && t.pending_slash => {
                // A final `/*`: the prefix itself and everything below it.
                t.pending_slash = false;
                t.out.push_str("(?:/.*)?");
                t.literal = None;
                i += 1;
            }
            c @ ('*' | '+' | '?') => {
                return Err(refuse(
                    p,
                    &format!("{c} must follow a parameter or a group (:name{c} or (...){c})"),
                ))
            }
            '{' | '}' => return Err(refuse(p, "{...} groups are not supported")),
            ')' => return Err(refuse(p, "unbalanced parentheses")),
            '\\' => {
                let ch = *chars.get(i + 1).ok_or_else(|| refuse(p, "ends with a lone \\"))?;
                t.literal_char(ch);
                i += 2;
            }
            c => {
                t.literal_char(c);
                i += 1;
            }
        }
    }
    Ok(t.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        compile(p, false).unwrap().matches(path, &mut params).then_some(params)
    }

    fn err(p: &str) -> String {
        compile(p, false).unwrap_err().context.to_string()
    }

    #[test]
    fn the_nextjs_exclusion_matcher() {
        let p = "/((?!api|_next/static|_next/image|favicon.ico).*)";
        for yes in ["/", "/about", "/shop/x", "/apx", "/_next/other", "/x/api"] {
            assert!(m(p, yes).is_some(), "{yes}");
        }
        // Like Next.js: the look-ahead excludes by prefix (`/apiary` too).
        for no in [
            "/api",
            "/api/x",
            "/apiary",
            "/_next/static/a.js",
            "/_next/image",
            "/favicon.ico",
        ] {
            assert!(m(p, no).is_none(), "{no}");
        }
        // A look-ahead after a literal prefix.
        let p = "/docs/((?!private).*)";
        assert!(m(p, "/docs/public").is_some() && m(p, "/docs/private/x").is_none());
        assert!(m(p, "/other").is_none());
    }

    #[test]
    fn parameters_and_modifiers() {
        assert_eq!(m("/about/:path*", "/about"), Some(vec![]));
        assert_eq!(
            m("/about/:path*", "/about/a/b").unwrap(),
            [("path".into(), "a/b".into())]
        );
        assert!(m("/about/:path*", "/aboutx").is_none());
        assert!(m("/about/:path+", "/about").is_none() && m("/about/:path+", "/about/a").is_some());
        assert!(m("/u/:id?", "/u").is_some() && m("/u/:id?", "/u/7").is_some() && m("/u/:id?", "/u/7/8").is_none());
        assert_eq!(m("/u/:id(\\d+)", "/u/42").unwrap(), [("id".into(), "42".into())]);
        assert!(m("/u/:id(\\d+)", "/u/x").is_none());
        assert!(m("/files/(.*)", "/files/a/b").is_some() && m("/files/(.*)", "/filesx").is_none());
        assert!(m("/a\\(b\\)", "/a(b)").is_some());
        assert!(m("/blog/:slug/", "/blog/x/").is_some() && m("/x/:a", "/x/1/").is_some());
        assert!(m("/about/:path*", "/about/").is_some());
        // A final /* in an expression keeps its plain meaning.
        assert!(m("/v/:n(\\d+)/*", "/v/2/deep/x").is_some() && m("/v/:n(\\d+)/*", "/v/2").is_some());
        assert!(m("/v/:n(\\d+)/*", "/v/22x").is_none());
    }

    #[test]
    fn folded_expressions_ignore_case() {
        let e = compile("/((?!api).*)", true).unwrap();
        assert!(!e.matches("/API/x", &mut Vec::new()) && e.matches("/shop", &mut Vec::new()));
    }

    #[test]
    fn what_cannot_be_matched_in_linear_time_is_refused_with_a_reason() {
        assert!(err("/:id/((?!x).*)").contains("look-ahead is supported only"));
        assert!(err("/((?!api).*)*").contains("look-ahead is supported only"));
        assert!(err("/((?=api).*)").contains("look-around"));
        assert!(err("/((?<!api).*)").contains("look-around"));
        assert!(err("/a/*/b").contains("must follow a parameter"));
        assert!(err("/a/(b").contains("unbalanced"));
        assert!(err("/a/b)").contains("unbalanced"));
        assert!(err("/{a}").contains("not supported"));
        assert!(err("/:").contains("needs a name"));
        assert!(err("/:a([)").contains("does not compile") || err("/:a([)").contains("unbalanced"));
        assert!(err("a").contains("must start with /"));
    }

    #[test]
    fn regexes_with_a_leading_look_ahead() {
        let e = compile_regex("re:^/(?!api/)", "^/(?!api/)", false).unwrap();
        assert!(e.matches("/shop", &mut Vec::new()) && !e.matches("/api/x", &mut Vec::new()));
        assert!(compile_regex("re:", "^/(a|b)(?!x)", false).is_err());
        assert!(compile_regex("re:", "^/api(?!x)y(?!z)", false).is_err());
    }
}
