//! The device class of a client — mobile, tablet, desktop or bot — for personalisation, from
//! the `Sec-CH-UA-Mobile` client hint when the browser sends it (Chromium does, on every
//! request) and the User-Agent otherwise, the way Vercel's `userAgent().device.type` and most
//! CDNs decide it. Computed only when a rule, a template or Python asks for it.

/// A device class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// Anything else a person uses.
    Desktop,
    /// A crawler or other automated client.
    Bot,
}

impl Device {
    /// `"mobile"`, `"tablet"`, `"desktop"` or `"bot"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Desktop => "desktop",
            Device::Bot => "bot",
        }
    }

    /// The class named `s` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(s: &str) -> Option<Device> {
        [Device::Mobile, Device::Tablet, Device::Desktop, Device::Bot]
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
    }
}

fn has(ua: &str, needle: &str) -> bool {
    ua.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Classifies a client: `is_bot` is the bot detector's verdict, `ch_mobile` the
/// `Sec-CH-UA-Mobile` field (`?1` or `?0`), preferred over the User-Agent when present.
pub fn classify(user_agent: Option<&str>, ch_mobile: Option<&str>, is_bot: bool) -> Device {
    let ua = user_agent.unwrap_or("");
    if is_bot || ["bot", "crawl", "spider", "slurp"].iter().any(|n| has(ua, n)) {
        return Device::Bot;
    }
    let tablet = has(ua, "ipad")
        || has(ua, "tablet")
        || has(ua, "kindle")
        || has(ua, "silk/")
        || has(ua, "playbook")
        || (has(ua, "android") && !has(ua, "mobile"));
    match ch_mobile.map(str::trim) {
        Some("?1") => return Device::Mobile,
        Some("?0") => return if tablet { Device::Tablet } else { Device::Desktop },
        _ => {}
    }
    if tablet {
        Device::Tablet
    } else if ["mobi", "iphone", "ipod", "windows phone", "blackberry", "opera mini"]
        .iter()
        .any(|n| has(ua, n))
    {
        Device::Mobile
    } else {
        Device::Desktop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                          (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)";
    const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/120.0 Mobile Safari/537.36";
    const GALAXY_TAB: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) \
                              Chrome/120.0 Safari/537.36";
    const MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
                       Chrome/120.0 Safari/537.36";

    #[test]
    fn user_agents() {
        assert_eq!(classify(Some(IPHONE), None, false), Device::Mobile);
        assert_eq!(classify(Some(PIXEL), None, false), Device::Mobile);
        assert_eq!(classify(Some(IPAD), None, false), Device::Tablet);
        assert_eq!(classify(Some(GALAXY_TAB), None, false), Device::Tablet);
        assert_eq!(classify(Some(MAC), None, false), Device::Desktop);
        assert_eq!(classify(None, None, false), Device::Desktop);
        assert_eq!(
            classify(Some("Googlebot/2.1 (+http://www.google.com/bot.html)"), None, false),
            Device::Bot
        );
        assert_eq!(classify(Some(MAC), None, true), Device::Bot);
    }

    #[test]
    fn the_client_hint_wins_over_the_user_agent() {
        // A reduced User-Agent (Chrome's) says little; the hint says mobile.
        assert_eq!(classify(Some(MAC), Some("?1"), false), Device::Mobile);
        assert_eq!(classify(Some(PIXEL), Some("?0"), false), Device::Desktop);
        assert_eq!(classify(Some(GALAXY_TAB), Some("?0"), false), Device::Tablet);
        assert_eq!(classify(Some(IPHONE), Some("nonsense"), false), Device::Mobile);
        assert_eq!(Device::parse("Tablet"), Some(Device::Tablet));
        assert_eq!(Device::parse("phone"), None);
    }
}
