//! The channel's address: an HTTPS base URL under which the repository keeps `metadata/` and
//! `targets/`. Checked once where it enters (the image spec, the device's configuration), so
//! nothing later fetches over plain HTTP or builds a path by hand.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use url::Url;

/// An HTTPS base URL of a TUF repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelUrl {
    /// Always ends with `/`, so joins stay below it.
    base: Url,
}

/// Why a text is not a channel address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelUrlError {
    /// Not a URL.
    #[error("{text:?} is not a URL: {why}")]
    NotUrl {
        /// The text.
        text: String,
        /// What the parser said.
        why: String,
    },
    /// Not `https://`.
    #[error("{0:?}: a channel is fetched over HTTPS only (https://…)")]
    NotHttps(String),
    /// A query or a fragment, which the repository's paths would not keep.
    #[error("{0:?}: a channel URL has no query or fragment")]
    Extra(String),
}

impl ChannelUrl {
    /// Checks `text`: an `https://` URL without query or fragment.
    pub fn parse(text: &str) -> Result<ChannelUrl, ChannelUrlError> {
        let base = Url::parse(&format!("{}/", text.trim_end_matches('/'))).map_err(|e| {
            // Slate links no Unicode tables for host names (they were 120 KiB of the agent):
            // an international name is written in its ASCII form.
            let why = if text.is_ascii() {
                e.to_string()
            } else {
                format!("{e} (write an international host name in its ASCII form, xn--…)")
            };
            ChannelUrlError::NotUrl {
                text: text.to_string(),
                why,
            }
        })?;
        if base.scheme() != "https" {
            return Err(ChannelUrlError::NotHttps(text.to_string()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(ChannelUrlError::Extra(text.to_string()));
        }
        Ok(ChannelUrl { base })
    }

    /// `…/metadata/`: the TUF roles.
    pub fn metadata(&self) -> Url {
        self.below("metadata/")
    }

    /// `…/targets/`: bundles and the release file.
    pub fn targets(&self) -> Url {
        self.below("targets/")
    }

    /// The target `file` with `query` (the device's seed and version, for the server's logs),
    /// or None when `file` is not a plain name below `targets/`.
    pub fn target(&self, file: &str, query: &str) -> Option<Url> {
        if file.is_empty() || file.contains('/') || file.contains("..") {
            return None;
        }
        let mut url = self.targets().join(file).ok()?;
        url.set_query(Some(query));
        Some(url)
    }

    fn below(&self, dir: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{dir}", self.base.path()));
        url
    }
}

/// The base without its trailing `/`, as an image's configuration writes it.
impl fmt::Display for ChannelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

impl Serialize for ChannelUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ChannelUrl, D::Error> {
        let text = String::deserialize(d)?;
        ChannelUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_international_host_name_is_taken_in_its_ascii_form() {
        let e = ChannelUrl::parse("https://bücher.example/fleet").unwrap_err();
        assert!(e.to_string().contains("xn--"), "{e}");
        let c = ChannelUrl::parse("https://xn--bcher-kva.example/fleet").unwrap();
        assert_eq!(c.to_string(), "https://xn--bcher-kva.example/fleet");
    }

    #[test]
    fn only_https_without_query_is_a_channel() {
        let c = ChannelUrl::parse("https://updates.example.com/fleet/").unwrap();
        assert_eq!(c.to_string(), "https://updates.example.com/fleet");
        assert_eq!(
            c.metadata().as_str(),
            "https://updates.example.com/fleet/metadata/"
        );
        assert_eq!(
            c.targets().as_str(),
            "https://updates.example.com/fleet/targets/"
        );
        assert_eq!(
            c.target("a-1.slate", "seed=7&version=1.0.0")
                .unwrap()
                .as_str(),
            "https://updates.example.com/fleet/targets/a-1.slate?seed=7&version=1.0.0"
        );
        assert_eq!(c.target("../x", "q"), None);
        assert_eq!(c.target("a/b", "q"), None);
        assert!(matches!(
            ChannelUrl::parse("http://updates.example.com"),
            Err(ChannelUrlError::NotHttps(_))
        ));
        assert!(matches!(
            ChannelUrl::parse("https://x/?a=b"),
            Err(ChannelUrlError::Extra(_))
        ));
        assert!(matches!(
            ChannelUrl::parse("updates.example.com"),
            Err(ChannelUrlError::NotUrl { .. })
        ));
        // At a host's root too.
        let root = ChannelUrl::parse("https://10.0.2.2:8443").unwrap();
        assert_eq!(root.metadata().as_str(), "https://10.0.2.2:8443/metadata/");
        assert_eq!(root.to_string(), "https://10.0.2.2:8443");
    }
}
