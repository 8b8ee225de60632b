//! Claims as text: how a verified claim becomes a header value, a template's output or a key.

use std::borrow::Cow;

use serde_json::Value;

/// A claim as header/key text: strings as they are, other JSON values serialised.
pub fn claim_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        v => Cow::Owned(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_themselves_and_the_rest_json() {
        assert_eq!(claim_text(&Value::from("alice")), "alice");
        assert_eq!(claim_text(&Value::from(42)), "42");
        assert_eq!(claim_text(&serde_json::json!(["a", 1])), r#"["a",1]"#);
    }
}
