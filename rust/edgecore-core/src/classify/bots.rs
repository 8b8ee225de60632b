//! Bot detection by User-Agent: a list of regular expressions compiled once.
//!
//! `is_bot` runs one combined regex (an alternation of every pattern): the regex crate's meta
//! engine extracts literal prefilters from it (most patterns contain a literal like `bot`), so a
//! browser User-Agent is usually rejected by a SIMD substring scan without running an automaton.
//! `matched` uses a `RegexSet` to say which pattern matched. Patterns the regex crate cannot
//! compile (look-around, back-references) are reported, not silently dropped.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::error::{Error, Result};

/// Compiled patterns.
pub struct BotDetector {
    any: Regex,
    set: RegexSet,
    patterns: Vec<String>,
    empty_is_bot: bool,
}

/// Size limits for the compiled automata (the default list needs more than the crate default).
const SIZE_LIMIT: usize = 64 << 20;

impl BotDetector {
    /// Compiles `patterns` (case-sensitive, as the crawler-user-agents list is written).
    /// `empty_is_bot` decides for a missing or empty User-Agent.
    pub fn new<S: AsRef<str>>(patterns: &[S], empty_is_bot: bool) -> Result<Self> {
        let mut bad = Vec::new();
        for p in patterns {
            if let Err(e) = RegexBuilder::new(p.as_ref()).size_limit(SIZE_LIMIT).build() {
                bad.push(format!(
                    "{:?}: {}",
                    p.as_ref(),
                    e.to_string().lines().last().unwrap_or("")
                ));
            }
        }
        if !bad.is_empty() {
            return Err(Error::config(format!("invalid bot pattern(s): {}", bad.join("; "))));
        }
        let patterns: Vec<String> = patterns.iter().map(|p| p.as_ref().to_owned()).collect();
        let alternation = if patterns.is_empty() {
            // Matches nothing.
            r"[^\s\S]".to_owned()
        } else {
            patterns
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|")
        };
        let any = RegexBuilder::new(&alternation)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| Error::config(format!("bot patterns do not compile together: {e}")))?;
        let set = RegexSetBuilder::new(&patterns)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| Error::config(format!("bot patterns do not compile together: {e}")))?;
        Ok(BotDetector {
            any,
            set,
            patterns,
            empty_is_bot,
        })
    }

    /// Whether `user_agent` looks like a bot.
    pub fn is_bot(&self, user_agent: &str) -> bool {
        if user_agent.trim().is_empty() {
            return self.empty_is_bot;
        }
        self.any.is_match(user_agent)
    }

    /// The first pattern (in list order) that matches, if any. An empty User-Agent matches the
    /// pseudo-pattern `""` when `empty_is_bot` is set.
    pub fn matched(&self, user_agent: &str) -> Option<&str> {
        if user_agent.trim().is_empty() {
            return self.empty_is_bot.then_some("");
        }
        self.set
            .matches(user_agent)
            .iter()
            .next()
            .map(|i| self.patterns[i].as_str())
    }

    /// The number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_and_names() {
        let d = BotDetector::new(&["Googlebot\\/", "[wW]get", "curl"], true).unwrap();
        assert!(d.is_bot("Mozilla/5.0 (compatible; Googlebot/2.1)"));
        assert_eq!(d.matched("Wget/1.21"), Some("[wW]get"));
        assert!(!d.is_bot("Mozilla/5.0 (Windows NT 10.0) Firefox/120.0"));
        assert!(d.is_bot(""));
        assert!(!BotDetector::new(&["x"], false).unwrap().is_bot("  "));
    }

    #[test]
    fn invalid_patterns_are_reported() {
        let e = BotDetector::new(&["ok", "(?<=x)y", "("], false).err().unwrap();
        assert!(e.context.contains("(?<=x)y") && e.context.contains("\"(\""), "{e}");
    }
}
