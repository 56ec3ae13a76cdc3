//! The spec's rules serde cannot express: names, paths, users, services, health checks and the
//! tables that need one another, each refusal naming the file and the field.

use super::*;

impl ImageSpec {
    /// Checks the rules serde cannot express.
    pub(super) fn validate(&self, path: &Path) -> Result<(), BuildError> {
        let bad = |field: String, why: String| BuildError::Spec {
            path: path.to_path_buf(),
            field,
            why,
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if !name_ok(&self.name) {
            return Err(bad(
                "name".into(),
                format!(
                    "{:?} must be 1-64 characters of a-z, 0-9, '-', '_', '.'",
                    self.name
                ),
            ));
        }
        if !name_ok(&self.hostname) {
            return Err(bad(
                "hostname".into(),
                format!("{:?} is not a valid hostname", self.hostname),
            ));
        }
        if self.network.dhcp && self.network.address.is_some() {
            return Err(bad(
                "network.address".into(),
                "an address and dhcp = true exclude each other: keep one".into(),
            ));
        }
        for (i, p) in self.etc_overrides.iter().enumerate() {
            let rel = p.rel();
            if !rel.starts_with("etc/") || rel.starts_with("etc/slate/") {
                return Err(bad(
                    format!("etc_overrides[{i}]"),
                    format!("{p} must be a file under /etc and not under /etc/slate (the device's own configuration and trust come only from the image)"),
                ));
            }
            if slate_core::config::ETC_NEVER_OVERRIDDEN.contains(&rel) {
                return Err(bad(
                    format!("etc_overrides[{i}]"),
                    format!("{p} decides who is root or what every program loads: a device may never replace it"),
                ));
            }
        }
        if !(1..=22).contains(&self.squashfs.compression_level) {
            return Err(bad(
                "squashfs.compression_level".into(),
                format!(
                    "{} is outside zstd's 1..=22",
                    self.squashfs.compression_level
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !name_ok(&s.name) || !seen.insert(s.name.clone()) {
                return Err(bad(
                    format!("service[{i}].name"),
                    format!("{:?} is empty, invalid or used twice", s.name),
                ));
            }
            match s.exec.first() {
                Some(p) if p.starts_with('/') => {}
                _ => {
                    return Err(bad(
                        format!("service[{i}].exec"),
                        "exec must start with an absolute program path".into(),
                    ))
                }
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::from(["root".to_string()]);
        for (i, u) in self.users.iter().enumerate() {
            if !name_ok(&u.name) || !names.insert(u.name.clone()) {
                return Err(bad(
                    format!("user[{i}].name"),
                    format!("{:?} is empty, invalid, root or used twice", u.name),
                ));
            }
            if u.uid == 0 || !ids.insert(u.uid) {
                return Err(bad(
                    format!("user[{i}].uid"),
                    format!("{} is 0 or used twice", u.uid),
                ));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            for (field, who) in [("user", &s.user), ("group", &s.group)] {
                if let Some(who) = who.as_ref().filter(|w| !names.contains(*w)) {
                    return Err(bad(
                        format!("service[{i}].{field}"),
                        format!("{who:?} is not root or a [[user]] of this spec"),
                    ));
                }
            }
            if let Some(c) = s
                .capabilities
                .iter()
                .find(|c| slate_core::config::capability_bit(c).is_none())
            {
                return Err(bad(
                    format!("service[{i}].capabilities"),
                    format!("{c:?} is not a Linux capability (see capabilities(7); e.g. net_bind_service)"),
                ));
            }
            // Root holds every capability: a list would look like a limit and be none.
            let as_root = s.user.as_deref().is_none_or(|u| u == "root");
            if as_root && !s.capabilities.is_empty() {
                return Err(bad(
                    format!("service[{i}].capabilities"),
                    format!(
                        "service {:?} runs as root, which has every capability: give it a `user` (a [[user]]) so that only these capabilities are kept",
                        s.name
                    ),
                ));
            }
        }
        for (i, c) in self.health.checks.iter().enumerate() {
            if let slate_core::config::Probe::Service { service, .. } = &c.probe {
                if !seen.contains(service) {
                    return Err(bad(
                        format!("health.check[{i}].service"),
                        format!("no service named {service:?}"),
                    ));
                }
            }
            if c.timeout_s == 0 || c.timeout_s > self.health.deadline_s {
                return Err(bad(
                    format!("health.check[{i}].timeout_s"),
                    format!(
                        "{} must be between 1 and the deadline ({})",
                        c.timeout_s, self.health.deadline_s
                    ),
                ));
            }
        }
        if let Err(why) = self.network.ipv4() {
            return Err(bad("network.address".into(), why));
        }
        for (i, l) in self.symlinks.iter().enumerate() {
            if l.target.is_empty() || l.target.contains('\0') || l.paths.is_empty() {
                return Err(bad(
                    format!("symlink[{i}]"),
                    "needs a non-empty target and at least one path".into(),
                ));
            }
        }
        Ok(())
    }
}
