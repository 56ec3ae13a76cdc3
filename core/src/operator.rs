//! What an operator may do: the roles its certificate carries.
//!
//! Operators differ: a dashboard needs the status, a release pipeline pushes, an on-call
//! engineer reboots, and only a few may force a downgrade or a failed version. The roles are
//! written into the certificate's subject as one organizational unit, `slate-roles:status,push`
//! (as Kubernetes reads groups from a client certificate's organization), so the operator CA's
//! signature covers them and `openssl x509 -subject` shows them. A certificate without that
//! unit (issued before roles existed) has every role.

use serde::{Deserialize, Serialize};

/// The organizational unit's prefix that carries the roles.
pub const ROLES_PREFIX: &str = "slate-roles:";
/// The organizationalUnitName attribute's OID (2.5.4.11), as DER value bytes.
pub const OU_OID: &[u8] = &[0x55, 0x04, 0x0b];

/// One thing an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read `/v1/status` and `/metrics`.
    Status,
    /// Upload an update (`POST /v1/update`).
    Push,
    /// Reboot or power off the device.
    Reboot,
    /// Override the device's judgement: `force=true` on an update (a failed or older
    /// version) or a reboot during a trial.
    Force,
}

impl Role {
    /// Every role, in the order they are written.
    pub const ALL: [Role; 4] = [Role::Status, Role::Push, Role::Reboot, Role::Force];

    /// The role's name in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Status => "status",
            Role::Push => "push",
            Role::Reboot => "reboot",
            Role::Force => "force",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a role (status, push, reboot, force)"))
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    /// Every role: a certificate from before roles existed.
    pub fn all() -> Roles {
        Roles::from_iter(Role::ALL)
    }

    /// Whether it holds `role`.
    pub fn has(self, role: Role) -> bool {
        self.0 & (1 << role as u8) != 0
    }

    /// The organizational unit that carries these roles.
    pub fn unit(self) -> String {
        let names: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.has(*r))
            .map(Role::as_str)
            .collect();
        format!("{ROLES_PREFIX}{}", names.join(","))
    }

    /// The roles of a certificate whose subject has these attributes (OID value bytes, text):
    /// the first `slate-roles:` unit's, or every role when there is none. An unknown role
    /// name is refused: a certificate meant to narrow what its holder may do must not be
    /// read as granting more.
    pub fn of_subject(attributes: &[(&[u8], &str)]) -> Result<Roles, String> {
        let Some(list) = attributes
            .iter()
            .filter(|(oid, _)| *oid == OU_OID)
            .find_map(|(_, v)| v.strip_prefix(ROLES_PREFIX))
        else {
            return Ok(Roles::all());
        };
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(str::parse::<Role>)
            .collect()
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Roles {
        Roles(roles.into_iter().fold(0, |m, r| m | (1 << r as u8)))
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = self.unit();
        f.write_str(unit.strip_prefix(ROLES_PREFIX).unwrap_or(&unit))
    }
}

/// The roles a request needs: `GET` routes read (status), an update pushes (and forces with
/// `force=true`), reboot and poweroff reboot (and force during a trial with `force=true`).
/// The operators' CRL needs no role: it is the operator CA's own signed word.
pub fn needed(post: bool, path: &str, force: bool) -> Vec<Role> {
    use crate::api;
    let mut roles = match (post, path) {
        (false, _) => vec![Role::Status],
        // Applying a staged update is the end of a push.
        (true, api::UPDATE_ROUTE | api::APPLY_ROUTE) => vec![Role::Push],
        (true, api::REBOOT_ROUTE | api::POWEROFF_ROUTE) => vec![Role::Reboot],
        // Wiping a device's data is an override of everything it keeps.
        (true, api::FACTORY_RESET_ROUTE) => vec![Role::Reboot, Role::Force],
        (true, api::OPERATORS_CRL_ROUTE) => Vec::new(),
        (true, _) => vec![Role::Status],
    };
    if force && post && !roles.is_empty() && !roles.contains(&Role::Force) {
        roles.push(Role::Force);
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api;

    #[test]
    fn roles_are_read_from_the_subject_and_written_back_the_same() {
        let ou = Roles::from_iter([Role::Push, Role::Status]).unit();
        assert_eq!(ou, "slate-roles:status,push");
        let cn: &[u8] = &[0x55, 0x04, 0x03];
        let attrs = [(cn, "alice"), (OU_OID, ou.as_str())];
        let r = Roles::of_subject(&attrs).unwrap();
        assert!(r.has(Role::Status) && r.has(Role::Push));
        assert!(!r.has(Role::Reboot) && !r.has(Role::Force));
        assert_eq!(r.to_string(), "status,push");
        // No roles unit: a certificate from before roles, with every role.
        assert_eq!(Roles::of_subject(&attrs[..1]), Ok(Roles::all()));
        // Another unit is not the roles; an unknown role is refused, not ignored.
        assert_eq!(Roles::of_subject(&[(OU_OID, "ops team")]), Ok(Roles::all()));
        assert!(Roles::of_subject(&[(OU_OID, "slate-roles:status,root")]).is_err());
        assert_eq!(
            Roles::of_subject(&[(OU_OID, "slate-roles:")]),
            Ok(Roles::default())
        );
    }

    #[test]
    fn each_route_needs_its_role() {
        assert_eq!(needed(false, api::STATUS_ROUTE, false), [Role::Status]);
        assert_eq!(needed(false, api::METRICS_ROUTE, true), [Role::Status]);
        assert_eq!(needed(true, api::UPDATE_ROUTE, false), [Role::Push]);
        assert_eq!(
            needed(true, api::UPDATE_ROUTE, true),
            [Role::Push, Role::Force]
        );
        assert_eq!(needed(true, api::REBOOT_ROUTE, false), [Role::Reboot]);
        assert_eq!(
            needed(true, api::REBOOT_ROUTE, true),
            [Role::Reboot, Role::Force]
        );
        assert_eq!(needed(true, api::POWEROFF_ROUTE, false), [Role::Reboot]);
        assert!(needed(true, api::OPERATORS_CRL_ROUTE, true).is_empty());
        assert_eq!(
            needed(true, api::FACTORY_RESET_ROUTE, false),
            [Role::Reboot, Role::Force]
        );
    }
}
