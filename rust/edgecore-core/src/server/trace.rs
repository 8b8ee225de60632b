//! [`Trace`]: the steps one request went through, for explain (see [`super::explain`]).

use std::fmt::Write as _;
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderValue;

use super::body::Body;

/// One phase's record.
#[derive(Debug, Clone)]
pub struct Step {
    /// The phase (`jwt`, `rate_limit`, `cache` …).
    pub phase: &'static str,
    /// What it decided.
    pub decision: String,
    /// The index of the rule that matched, among that phase's rules.
    pub rule: Option<usize>,
    /// Time spent since the previous step, in microseconds.
    pub micros: u64,
}

/// The steps of one request.
#[derive(Debug)]
pub struct Trace {
    /// The trace replaces the response's body (as JSON), rather than riding in a field.
    pub as_body: bool,
    last: Instant,
    /// The steps so far.
    pub steps: Vec<Step>,
}

impl Trace {
    /// An empty trace, its clock started at `since`.
    pub fn new(as_body: bool, since: Instant) -> Trace {
        Trace {
            as_body,
            last: since,
            steps: Vec::with_capacity(16),
        }
    }

    /// Records `phase`'s decision.
    pub fn mark(&mut self, phase: &'static str, decision: impl Into<String>, rule: Option<usize>) {
        let now = Instant::now();
        let micros = now.duration_since(self.last).as_micros() as u64;
        self.last = now;
        self.steps.push(Step {
            phase,
            decision: decision.into(),
            rule,
            micros,
        });
    }

    /// The `x-edge-explain` value: `phase=decision[#rule](Nus); …`.
    pub fn header(&self) -> HeaderValue {
        let mut out = String::new();
        for s in &self.steps {
            if !out.is_empty() {
                out.push_str("; ");
            }
            let _ = write!(out, "{}={}", s.phase, s.decision);
            if let Some(r) = s.rule {
                let _ = write!(out, " rule#{r}");
            }
            let _ = write!(out, " ({}us)", s.micros);
        }
        let visible: String = out
            .chars()
            .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
            .collect();
        HeaderValue::from_str(&visible).expect("visible ASCII")
    }

    /// The JSON document for `?__explain`: the steps, then the response they led to.
    pub fn body(&self, resp: &http::Response<Body>) -> Bytes {
        let steps: Vec<_> = self
            .steps
            .iter()
            .map(|s| serde_json::json!({"phase": s.phase, "decision": s.decision, "rule": s.rule, "micros": s.micros}))
            .collect();
        let headers: serde_json::Map<String, serde_json::Value> = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let doc = serde_json::json!({
            "phases": steps,
            "response": {"status": resp.status().as_u16(), "headers": headers},
        });
        Bytes::from(serde_json::to_vec_pretty(&doc).expect("JSON values"))
    }
}
