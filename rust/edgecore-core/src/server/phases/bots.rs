//! The bot check: a User-Agent that the bot detector recognises, and no allow pattern matches,
//! is blocked (403) or tagged (`x-edge-bot: 1` toward the origin), as the policy says.

use http::header::HeaderValue;
use http::StatusCode;

use crate::server::ctx::{Flow, RequestCtx};
use crate::server::metrics::{Outcome, Policy};
use crate::server::plan::Plan;
use crate::server::respond::status_response;

/// Classifies the client; answers 403 when the policy blocks bots and this is one.
pub fn check(plan: &Plan, ctx: &mut RequestCtx) -> Flow {
    let Some(b) = &plan.bots else { return Flow::Continue };
    let ua = ctx.request.header(&http::header::USER_AGENT).unwrap_or("");
    let detected = b.detects(ua);
    let is_bot = ctx.dev.bot.unwrap_or(detected);
    ctx.request.edge.is_bot = is_bot;
    if b.shadow && b.block {
        // Shadow mode: what blocking would have done, recorded; the request goes on untagged.
        ctx.notes.shadow.push((Policy::Bots, is_bot));
        return Flow::Continue;
    }
    if is_bot && b.block {
        ctx.notes.outcome = Some(Outcome::BotBlocked);
        return Flow::Answer(status_response(StatusCode::FORBIDDEN, "Forbidden"));
    }
    if is_bot {
        ctx.request
            .headers
            .as_map_mut()
            .insert("x-edge-bot", HeaderValue::from_static("1"));
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan_with_bots};

    const CRAWLER: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn a_bot_is_blocked_or_tagged_and_a_browser_continues() {
        let block = plan_with_bots("block", &[]);
        let mut c = ctx_with("/", &[("user-agent", CRAWLER)]);
        assert!(matches!(check(&block, &mut c), Flow::Answer(r) if r.status() == 403));
        assert_eq!(c.notes.outcome, Some(Outcome::BotBlocked));

        let tag = plan_with_bots("tag", &[]);
        let mut c = ctx_with("/", &[("user-agent", CRAWLER)]);
        assert!(matches!(check(&tag, &mut c), Flow::Continue));
        assert!(c.request.edge.is_bot);
        assert_eq!(c.request.header("x-edge-bot"), Some("1"));

        let mut c = ctx_with("/", &[("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")]);
        assert!(matches!(check(&block, &mut c), Flow::Continue));
        assert!(!c.request.edge.is_bot);
    }

    #[test]
    fn an_allowed_name_is_a_product_token_not_a_substring() {
        let p = plan_with_bots("block", &["Googlebot", "re:^Special"]);
        // Twice each: the second verdict comes from the memo and must be the same.
        for _ in 0..2 {
            for ua in [
                CRAWLER,
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
                "googlebot",
                "Special crawler",
            ] {
                let mut c = ctx_with("/", &[("user-agent", ua)]);
                assert!(matches!(check(&p, &mut c), Flow::Continue), "{ua}");
            }
            for ua in [
                "NotGooglebot/1.0 crawler",
                "xGooglebot crawl",
                "Googlebotx/1 bot",
                "a Special crawler",
            ] {
                let mut c = ctx_with("/", &[("user-agent", ua)]);
                assert!(matches!(check(&p, &mut c), Flow::Answer(_)), "{ua}");
            }
        }
        let b = p.bots.as_ref().unwrap();
        assert_eq!(b.memo.len(), 8);
        // A User-Agent too long to remember is still classified, every time.
        let long = format!("{} crawler", "x".repeat(600));
        for _ in 0..2 {
            let mut c = ctx_with("/", &[("user-agent", &long)]);
            assert!(matches!(check(&p, &mut c), Flow::Answer(_)));
        }
        assert_eq!(b.memo.len(), 8);
    }

    #[test]
    fn an_allowed_bot_continues_and_dev_mode_overrides() {
        let p = plan_with_bots("block", &["Googlebot"]);
        let mut c = ctx_with("/", &[("user-agent", CRAWLER)]);
        assert!(matches!(check(&p, &mut c), Flow::Continue));
        let mut c = ctx_with("/", &[("user-agent", "curl/8")]);
        c.dev.bot = Some(true);
        assert!(matches!(check(&p, &mut c), Flow::Answer(_)));
    }
}
