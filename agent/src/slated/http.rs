//! The small pieces of HTTP request handling slated does itself (hyper parses the rest):
//! query flags. Pure, so they can be fuzzed and unit-tested.

/// The value of a boolean query flag (`?force=true`, `?reboot=0`, `?force`).
pub fn query_flag(query: Option<&str>, name: &str) -> Option<bool> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        (k == name).then(|| v == "true" || v == "1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        assert_eq!(
            query_flag(Some("force=true&reboot=false"), "reboot"),
            Some(false)
        );
        assert_eq!(query_flag(Some("force"), "force"), Some(true));
        assert_eq!(query_flag(None, "force"), None);
        assert_eq!(query_flag(Some("forced=true"), "force"), None);
    }
}
