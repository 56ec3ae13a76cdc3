//! Device configuration files the imager writes into the image and the agent reads.
//!
//! ```text
//! initrd:  /etc/slate/initrd.toml         InitrdConfig   modules to load in order, watchdog
//! root:    /etc/slate/image.toml          ImageInfo      name, version, board of this image
//!          /etc/slate/init.toml           InitConfig     hostname, debug shell
//!          /etc/slate/services/<n>.toml   Service        one supervised service each
//!          /etc/slate/health.toml         Health         checks and their deadline
//!          /etc/slate/agent.toml          AgentConfig    slated's port, trust file, operator CA
//! ```
//! They live here, not in the imager or the agent, so both sides parse the same types.
//! Unknown fields are refused so a typo in an image spec is caught on the build host.

use crate::version::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Paths of the files above, relative to the root of their tree.
pub mod paths {
    /// Initrd configuration.
    pub const INITRD: &str = "etc/slate/initrd.toml";
    /// Image identity.
    pub const IMAGE: &str = "etc/slate/image.toml";
    /// PID 1 settings.
    pub const INIT: &str = "etc/slate/init.toml";
    /// One file per service.
    pub const SERVICES_DIR: &str = "etc/slate/services";
    /// Health checks.
    pub const HEALTH: &str = "etc/slate/health.toml";
    /// Agent settings.
    pub const AGENT: &str = "etc/slate/agent.toml";
    /// Network settings.
    pub const NETWORK: &str = "etc/slate/network.toml";
    /// Trust anchors for update signatures.
    pub const TRUST: &str = "etc/slate/trust.toml";
    /// The operator CA's certificate(s), which authorise requests to the agent.
    pub const OPERATORS: &str = "etc/slate/operators.pem";
    /// A Secure Boot image's db certificate (PEM, public): a bundle's UKIs must be signed by
    /// it, or the firmware would refuse to boot them.
    pub const SECURE_BOOT_DB: &str = "etc/slate/secure-boot-db.crt";
    /// Update channel settings (`[update]` in the spec).
    pub const UPDATE: &str = "etc/slate/update.toml";
    /// When the device may apply updates (`[update] windows`, `timezone`): a push-only image
    /// has one too.
    pub const POLICY: &str = "etc/slate/policy.toml";
    /// The fleet server's settings (`[fleet]` in the spec).
    pub const FLEET: &str = "etc/slate/fleet.toml";
    /// CA certificate(s) the fleet server must chain to (`[fleet] server_ca`).
    pub const FLEET_CA: &str = "etc/slate/fleet/ca.pem";
    /// The channel's TUF root of trust (`[update] channel_root`).
    pub const CHANNEL_ROOT: &str = "etc/slate/channel/root.json";
    /// CA certificate(s) the channel's HTTPS server must chain to (`[update] channel_ca`).
    pub const CHANNEL_CA: &str = "etc/slate/channel/ca.pem";
    /// Provenance of every input of the image.
    pub const PROVENANCE: &str = "usr/lib/slate/provenance.toml";
    /// In the initramfs of a sealed-data image: the empty file system stage 1 writes into the
    /// encrypted `/data` at enrolment ([`crate::sparse`]).
    pub const DATA_TEMPLATE: &str = "usr/lib/slate/data-template";
    /// In the initramfs of a measured-boot image: the PCR-signing key's public half (PEM), the
    /// key `/data` is sealed to (measured with the initramfs, and the same as `.pcrpkey`).
    pub const PCR_PUBLIC_KEY: &str = "usr/lib/slate/pcr-public-key.pem";
}

/// What stage 1 needs from the initramfs, beyond the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitrdConfig {
    /// `uname -r` of the kernel the modules belong to.
    pub kernel_release: String,
    /// Module files (paths inside the initramfs) in the order they must be loaded:
    /// every module after all of its dependencies.
    pub modules: Vec<String>,
    /// Hardware watchdog to open early, if the board has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<Watchdog>,
    /// The image's security epoch: stage 1 refuses to start it below the device's floor.
    #[serde(default)]
    pub security_epoch: u64,
    /// Test images only: stage 1 stops at the harness's cut points (the grow of `data`), as
    /// the agent does with `[agent] test_hooks`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test_hooks: bool,
    /// The image boots as signed Unified Kernel Images: stage 1 says loudly when the firmware
    /// has Secure Boot off, since the root hash is then only as good as the ESP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure_boot: bool,
    /// The UKIs carry signed PCR policies: with a TPM, stage 1 extends PCR 11 with
    /// "enter-initrd" and "leave-initrd" (as systemd-pcrphase does), so that no process
    /// after it can reach a value the vendor signed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub measured_boot: bool,
    /// `/data` is encrypted with a key the TPM seals to the vendor's signed PCR policies
    /// (`[tpm]`); None: plain ext4 as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_data: Option<SealedData>,
}

/// How stage 1 opens a sealed `/data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedData {
    /// Without a TPM the image refuses to start (and falls back); otherwise `/data` is plain
    /// and status warns.
    #[serde(default)]
    pub required: bool,
}

/// A hardware watchdog: PID 1 opens it early and feeds it while alive, so a hang reboots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    /// Device node.
    #[serde(default = "default_watchdog_device")]
    pub device: String,
    /// Seconds without a feed before the machine resets.
    #[serde(default = "default_watchdog_timeout")]
    pub timeout_s: u32,
}

fn default_watchdog_device() -> String {
    "/dev/watchdog".into()
}

fn default_watchdog_timeout() -> u32 {
    30
}

/// Identity of the image in a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// Product name (from the spec); bundles for another product are refused.
    pub name: String,
    /// Image version.
    pub version: Version,
    /// Board name; bundles for another board are refused.
    pub board: String,
    /// Security epoch (anti-rollback): the device's floor never drops below the running
    /// image's, and a committed higher epoch makes lower-epoch images unbootable.
    #[serde(default)]
    pub security_epoch: u64,
    /// Built for Secure Boot: the slots boot as signed Unified Kernel Images, and bundles for
    /// it must carry one signed by the image's db key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure_boot: bool,
    /// The slots boot Unified Kernel Images without Secure Boot (a measured-boot image: the
    /// UKIs carry the vendor's signed PCR policies), so its bundles carry UKIs too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ukis: bool,
    /// When it was built (`SOURCE_DATE_EPOCH`, Unix seconds; none when the build had none: a
    /// build never reads the clock). The device's clock is never set earlier than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<i64>,
}

impl ImageInfo {
    /// The slots boot UKIs (signed ones on a Secure Boot image), not `.conf` entries: the
    /// bundles it takes are format 2.
    pub fn boots_ukis(&self) -> bool {
        self.secure_boot || self.ukis
    }
}

/// Settings for PID 1's second stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// Hostname to set.
    pub hostname: String,
    /// Start a root shell on the console (development images only).
    #[serde(default)]
    pub debug_shell: bool,
    /// Log levels and the size cap of `/data/slate/log/`.
    #[serde(default)]
    pub log: LogConfig,
    /// Configuration files (absolute, under `/etc`, never `/etc/slate`) that a device may
    /// replace with its own copy in `/data/etc`: stage 2 binds each one present there
    /// read-only over the image's, so a device keeps its settings across updates while the
    /// root stays the verified image.
    #[serde(default)]
    pub etc_overrides: Vec<String>,
}

/// `/etc` files (relative to `/`) that `etc_overrides` never names: who is root, and what
/// every dynamically linked program loads.
pub const ETC_NEVER_OVERRIDDEN: [&str; 4] =
    ["etc/passwd", "etc/group", "etc/shadow", "etc/ld.so.preload"];

/// How much the device logs, and how much of it it keeps on `/data`.
///
/// Every file in `/data/slate/log/` (one per service, `init.log` for PID 1, `stage1.log`) is
/// rotated once it reaches half of `max_mib`, keeping one older generation, so each log holds
/// at most `max_mib` and a chatty service can never fill `/data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Which events are kept: a level (`info`), or `target=level` pairs after it
    /// (`info,slate_agent::slated::install=debug`), as `RUST_LOG` reads them. The kernel command line's
    /// `slate.log=` overrides it for one boot.
    #[serde(default = "default_log_filter")]
    pub filter: String,
    /// MiB one log file may take on `/data`, its rotated generation included.
    #[serde(default = "default_log_max_mib")]
    pub max_mib: u64,
}

fn default_log_filter() -> String {
    "info".into()
}

fn default_log_max_mib() -> u64 {
    8
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            filter: default_log_filter(),
            max_mib: default_log_max_mib(),
        }
    }
}

impl LogConfig {
    /// Bytes one log file may take, its rotated generation included.
    pub fn max_bytes(&self) -> u64 {
        self.max_mib.saturating_mul(1 << 20)
    }
}

/// When a supervised service is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whenever it exits.
    #[default]
    Always,
    /// Only when it exits non-zero or by a signal.
    OnFailure,
    /// Never.
    Never,
}

/// A service PID 1 supervises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Name (also the file name under `/etc/slate/services/`).
    pub name: String,
    /// argv; `exec[0]` is an absolute path.
    pub exec: Vec<String>,
    /// Extra environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// User id it runs as (0: root; the imager resolves the spec's user name).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    /// Group id it runs as (no supplementary groups).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    /// Capabilities it keeps (names from capabilities(7) without `CAP_`, lower case), as
    /// ambient capabilities across exec; every other one is gone. Every service also runs
    /// with `no_new_privs`, so no setuid program gives any back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Service {
    /// A root service with no other settings (slated, the debug shell).
    pub fn root(name: &str, exec: Vec<String>) -> Service {
        Service {
            name: name.into(),
            exec,
            env: BTreeMap::new(),
            restart: Restart::Always,
            uid: 0,
            gid: 0,
            capabilities: Vec::new(),
        }
    }
}

/// Linux capability names (capabilities(7), without `CAP_`, lower case), in bit order: what a
/// service may name in `capabilities`.
pub const CAPABILITIES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The bit of a capability name (`net_bind_service`, or `CAP_NET_BIND_SERVICE`).
pub fn capability_bit(name: &str) -> Option<u32> {
    let n = name.to_ascii_lowercase();
    let n = n.strip_prefix("cap_").unwrap_or(&n);
    CAPABILITIES
        .iter()
        .position(|c| *c == n)
        .and_then(|i| u32::try_from(i).ok())
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Probe {
    /// A command that must exit 0.
    Exec {
        /// argv.
        command: Vec<String>,
    },
    /// An HTTP GET that must answer 2xx.
    Http {
        /// `http://host:port/path`.
        url: String,
    },
    /// A TCP connect that must succeed.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A supervised service that must have been running for `for_s` seconds.
    Service {
        /// Service name.
        service: String,
        /// Seconds it must have stayed up.
        #[serde(default)]
        for_s: u32,
    },
}

/// One health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Name shown in status and rollback reasons.
    pub name: String,
    /// Seconds one attempt may take.
    #[serde(default = "default_check_timeout")]
    pub timeout_s: u32,
    /// What to probe.
    #[serde(flatten)]
    pub probe: Probe,
}

fn default_check_timeout() -> u32 {
    5
}

/// The health checks a trial boot must pass before it is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Seconds after boot by which every check must have passed.
    #[serde(default = "default_deadline")]
    pub deadline_s: u32,
    /// The checks.
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            deadline_s: default_deadline(),
            checks: Vec::new(),
        }
    }
}

fn default_deadline() -> u32 {
    120
}

/// How PID 1 sets up the network for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Interface to bring up (besides `lo`).
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Static IPv4 address with prefix (`10.0.2.15/24`); none leaves the link up unaddressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Take the address, default route and DNS servers from a DHCP server instead (renewed
    /// for as long as the device runs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp: bool,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            interface: default_interface(),
            address: None,
            dhcp: false,
        }
    }
}

fn default_interface() -> String {
    "eth0".into()
}

impl Network {
    /// The static address split into address and prefix length.
    pub fn ipv4(&self) -> Result<Option<(std::net::Ipv4Addr, u8)>, String> {
        let Some(a) = &self.address else {
            return Ok(None);
        };
        let (ip, prefix) = a.split_once('/').unwrap_or((a, "24"));
        let ip = ip
            .parse()
            .map_err(|_| format!("address {a:?} is not IPv4"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("prefix of {a:?} is not 0..=32"))?;
        Ok(Some((ip, prefix)))
    }
}

/// Settings of `slated`.
///
/// Secure by default: the API is HTTPS with client certificates, and only certificates issued
/// by the operator CA in `operators` are authorised. Plain HTTP needs `insecure_http`, which
/// `slate build` refuses together with a trust file unless asked for by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// TCP port of the API.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Path of the trust file in the image; None: the image refuses every update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// Path in the image of the operator CA's certificate(s) (PEM, public only). Requests with
    /// a client certificate issued by it are authorised; None: no request is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operators: Option<String>,
    /// Serve `GET /v1/status` and `/metrics` without a client certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public_status: bool,
    /// Plain HTTP without authentication, for development only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
    /// Slowest upload accepted, in KiB/s averaged from its start (after a short grace): a
    /// client that trickles cannot hold the install lock.
    #[serde(default = "default_min_upload_kib_s")]
    pub min_upload_kib_s: u32,
    /// Removed: the bearer token was one fleet-wide secret in cleartext in every image. Kept
    /// only so that `slate build` and the agent can say what to use instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Test images only: halt at the cut point the QEMU harness names through fw_cfg
    /// (`opt/slate/cut-at`), so a power cut can be placed at an exact step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test_hooks: bool,
}

/// What `token` users are told.
pub const TOKEN_REMOVED: &str = "the bearer `token` option is gone (it was one fleet-wide secret, in cleartext in every image): remove it, make an operator CA with `slate ca init --out ops-ca`, set `[agent] operators = \"ops-ca.crt.pem\"` (or `slate build --operators ops-ca.crt.pem`), and push with `slate push --identity` and a certificate from `slate ca issue`";

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            port: default_port(),
            trust: None,
            operators: None,
            public_status: false,
            insecure_http: false,
            min_upload_kib_s: default_min_upload_kib_s(),
            token: None,
            test_hooks: false,
        }
    }
}

fn default_min_upload_kib_s() -> u32 {
    64
}

fn default_port() -> u16 {
    8080
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_checks_parse_by_kind() {
        let h: Health = toml::from_str(
            r#"
            deadline_s = 30
            [[check]]
            name = "web"
            kind = "http"
            url = "http://127.0.0.1/"
            [[check]]
            name = "up"
            kind = "service"
            service = "httpd"
            for_s = 5
            timeout_s = 2
            "#,
        )
        .unwrap();
        assert_eq!(h.checks.len(), 2);
        assert_eq!(h.checks[0].timeout_s, 5);
        assert!(matches!(h.checks[1].probe, Probe::Service { for_s: 5, .. }));
    }

    #[test]
    fn capability_names_map_to_their_bits() {
        assert_eq!(capability_bit("net_bind_service"), Some(10));
        assert_eq!(capability_bit("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(capability_bit("checkpoint_restore"), Some(40));
        assert_eq!(capability_bit("root"), None);
    }

    #[test]
    fn unknown_probe_kind_is_refused() {
        let r: Result<Health, _> = toml::from_str("[[check]]\nname='x'\nkind='ping'\n");
        assert!(r.is_err());
    }
}
