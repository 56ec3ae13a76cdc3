//! The image spec (`rootfs/image.toml`): what goes into a Slate image, parsed into typed values
//! before anything touches the disk.
//!
//! Paths in the spec are relative to the spec file's folder. Unknown keys are errors, so a typo
//! is reported with its file, line and column instead of being silently ignored.

use crate::error::{parse_toml, BuildError};
use serde::{Deserialize, Deserializer};
use slate_core::config::{AgentConfig, Check, Restart};
use slate_core::Version;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A validated absolute path inside the image (`/usr/bin/x`), stored without the leading `/`.
/// `..`, `.`, empty components and NUL are refused so nothing can escape the tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImagePath(String);

impl ImagePath {
    /// Validates `text` (absolute, or relative to `/`).
    pub fn new(text: &str) -> Result<ImagePath, String> {
        let trimmed = text.trim_start_matches("./").trim_start_matches('/');
        let trimmed = trimmed.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(ImagePath(String::new()));
        }
        for c in trimmed.split('/') {
            if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
                return Err(format!(
                    "path {text:?} has an empty, '.' or '..' component; image paths must be plain absolute paths"
                ));
            }
        }
        Ok(ImagePath(trimmed.to_string()))
    }

    /// The path without its leading `/` ("" is the root).
    pub fn rel(&self) -> &str {
        &self.0
    }

    /// The parent folder, None for the root.
    pub fn parent(&self) -> Option<ImagePath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((p, _)) => ImagePath(p.to_string()),
            None => ImagePath(String::new()),
        })
    }

    /// A child of this folder.
    pub fn join(&self, name: &str) -> Result<ImagePath, String> {
        ImagePath::new(&format!("{}/{}", self.0, name))
    }
}

impl std::fmt::Display for ImagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ImagePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ImagePath, D::Error> {
        let s = String::deserialize(d)?;
        ImagePath::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Permission bits, written as an octal string ("0644") or a TOML integer (0o644).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u16);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u32),
        }
        let value = match Raw::deserialize(d)? {
            Raw::Text(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
                serde::de::Error::custom(format!("mode {s:?} is not octal (e.g. \"0644\")"))
            })?,
            Raw::Int(i) => i,
        };
        if value > 0o7777 {
            return Err(serde::de::Error::custom(format!(
                "mode {value:o} has bits beyond 07777"
            )));
        }
        Ok(Mode(value as u16))
    }
}

/// The whole spec file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Product name: os-release `NAME`, bundle compatibility.
    pub name: String,
    /// Image version (`slate build --version` overrides it).
    pub version: Version,
    /// Default board (`slate build --board` overrides it).
    pub board: String,
    /// Hostname of the device.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Start a root shell on the serial console (development images).
    #[serde(default)]
    pub debug_shell: bool,
    /// Device log levels and the cap of `/data/slate/log/` (`[log] filter = "info"`,
    /// `max_mib = 8`).
    #[serde(default)]
    pub log: slate_core::config::LogConfig,
    /// Files under `/etc` a device may replace from `/data/etc` (a package's conffile such as
    /// `/etc/nginx/nginx.conf`); each must be a file of the root, never under `/etc/slate`.
    #[serde(default)]
    pub etc_overrides: Vec<ImagePath>,
    /// Folders copied into the root as they are (modes kept, owner root).
    #[serde(default)]
    pub overlays: Vec<PathBuf>,
    /// squashfs settings.
    #[serde(default)]
    pub squashfs: SquashfsSpec,
    /// Debian packages extracted into the root.
    #[serde(default, rename = "package")]
    pub packages: Vec<PackageSpec>,
    /// The Debian archive the packages come from (`slate lock` resolves against it).
    #[serde(default)]
    pub debian: crate::image::debian::apt::DebianSource,
    /// Single files.
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    /// Folders to create.
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DirSpec>,
    /// Symbolic links.
    #[serde(default, rename = "symlink")]
    pub symlinks: Vec<SymlinkSpec>,
    /// Supervised services.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceSpec>,
    /// System users for services.
    #[serde(default, rename = "user")]
    pub users: Vec<UserSpec>,
    /// Health checks gating a trial boot.
    #[serde(default)]
    pub health: HealthSpec,
    /// Agent settings.
    #[serde(default)]
    pub agent: AgentSpec,
    /// Network set up by PID 1.
    #[serde(default)]
    pub network: slate_core::config::Network,
    /// The update channel the device pulls from (none: only `slate push`).
    #[serde(default)]
    pub update: Option<crate::image::update_spec::UpdateSpec>,
    /// A hawkBit DDI fleet server the device reports to and takes deployments from (none: no
    /// fleet server).
    #[serde(default)]
    pub fleet: Option<crate::image::fleet_spec::FleetSpec>,
    /// `[secure_boot] key, cert`: build for UEFI Secure Boot, each slot a Unified Kernel Image
    /// signed with this db pair (`slate sb keygen`; paths relative to the spec, the key never
    /// enters the image), and the boot loader too.
    #[serde(default)]
    pub secure_boot: Option<crate::image::write::uki::SigningPair>,
    /// `[tpm] pcr_key`: measured boot — each slot boots a UKI that carries the PCR-signing
    /// key's public half and its signature of the PCR 11 policy (signed for the firmware too
    /// with `[secure_boot]`; unsigned without it).
    #[serde(default)]
    pub tpm: Option<crate::image::write::pcr_policy::TpmSpec>,
}

fn default_hostname() -> String {
    "slate".into()
}

/// squashfs compression settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquashfsSpec {
    /// zstd level, 1..=22 (mksquashfs's default is 15).
    #[serde(default = "default_level")]
    pub compression_level: u32,
}

impl Default for SquashfsSpec {
    fn default() -> SquashfsSpec {
        SquashfsSpec {
            compression_level: default_level(),
        }
    }
}

fn default_level() -> u32 {
    15
}

/// A Debian package from the deb cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// Package name as apt knows it.
    pub name: String,
    /// Only these paths (and the folders above them); all when empty.
    #[serde(default)]
    pub paths: Vec<ImagePath>,
}

/// One file from the build host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Host path, relative to the spec.
    pub source: PathBuf,
    /// Destination in the image.
    pub dest: ImagePath,
    /// Permissions (default 0644).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Owner uid.
    #[serde(default)]
    pub uid: u32,
    /// Owner gid.
    #[serde(default)]
    pub gid: u32,
}

/// A folder to create.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    /// Where.
    pub path: ImagePath,
    /// Permissions (default 0755).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Owner uid.
    #[serde(default)]
    pub uid: u32,
    /// Owner gid.
    #[serde(default)]
    pub gid: u32,
}

/// Links, all pointing at one target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkSpec {
    /// What the links point at (kept as written: relative or absolute).
    pub target: String,
    /// Where the links are created.
    pub paths: Vec<ImagePath>,
}

/// A service, as the spec declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name.
    pub name: String,
    /// argv.
    pub exec: Vec<String>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// User it runs as: `root` (the default, warned about) or a `[[user]]`.
    #[serde(default)]
    pub user: Option<String>,
    /// Group it runs as [default: the user's own group].
    #[serde(default)]
    pub group: Option<String>,
    /// Capabilities it keeps (`net_bind_service`, …; capabilities(7) without `CAP_`).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// A system user (and its group of the same name and id) the imager writes into
/// `/etc/passwd` and `/etc/group`, for services to run as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Name.
    pub name: String,
    /// User id (not 0).
    pub uid: u32,
    /// Group id [default: the uid].
    #[serde(default)]
    pub gid: Option<u32>,
    /// Home folder [default: /].
    #[serde(default)]
    pub home: Option<String>,
}

impl UserSpec {
    /// The group id.
    pub fn gid(&self) -> u32 {
        self.gid.unwrap_or(self.uid)
    }
}

/// Health checks and their deadline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Seconds after boot by which all checks must pass.
    #[serde(default = "default_deadline")]
    pub deadline_s: u32,
    /// The checks.
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
}

impl Default for HealthSpec {
    fn default() -> HealthSpec {
        HealthSpec {
            deadline_s: default_deadline(),
            checks: Vec::new(),
        }
    }
}

fn default_deadline() -> u32 {
    slate_core::config::Health::default().deadline_s
}

/// Agent settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Port of the API (default 8080).
    #[serde(default)]
    pub port: Option<u16>,
    /// Trust file on the host, relative to the spec; baked in at `/etc/slate/trust.toml`.
    #[serde(default)]
    pub trust: Option<PathBuf>,
    /// Operator CA certificate (PEM, public) on the host, relative to the spec; baked in at
    /// `/etc/slate/operators.pem`. Client certificates it issued may use the API.
    #[serde(default)]
    pub operators: Option<PathBuf>,
    /// Serve status and metrics without a client certificate.
    #[serde(default)]
    pub public_status: bool,
    /// Plain HTTP without authentication (development only; refused with a trust file unless
    /// `slate build --allow-insecure`).
    #[serde(default)]
    pub insecure_http: bool,
    /// Slowest upload accepted, KiB/s (default 64).
    #[serde(default)]
    pub min_upload_kib_s: Option<u32>,
    /// Removed; a spec that sets it is refused with what to use instead.
    #[serde(default)]
    pub token: Option<String>,
    /// Test images only: honour the QEMU harness's cut points (never in production images).
    #[serde(default)]
    pub test_hooks: bool,
}

impl ImageSpec {
    /// The (uid, gid) of a service's `user` and `group` (root when not given).
    pub fn ids_of(&self, s: &ServiceSpec) -> (u32, u32) {
        let user = |name: &str| self.users.iter().find(|u| u.name == name);
        let uid = s.user.as_deref().and_then(user).map_or(0, |u| u.uid);
        let gid = match s.group.as_deref() {
            Some(g) => user(g).map_or(0, UserSpec::gid),
            None => s.user.as_deref().and_then(user).map_or(0, UserSpec::gid),
        };
        (uid, gid)
    }
}

impl AgentSpec {
    /// The device-side configuration this produces; `has_trust` and `has_operators` say
    /// whether a trust file and an operator CA are baked in (from the spec or the command line).
    pub fn device_config_with(&self, has_trust: bool, has_operators: bool) -> AgentConfig {
        let defaults = AgentConfig::default();
        AgentConfig {
            port: self.port.unwrap_or(defaults.port),
            trust: has_trust.then(|| format!("/{}", slate_core::config::paths::TRUST)),
            operators: has_operators.then(|| format!("/{}", slate_core::config::paths::OPERATORS)),
            public_status: self.public_status,
            insecure_http: self.insecure_http,
            min_upload_kib_s: self.min_upload_kib_s.unwrap_or(defaults.min_upload_kib_s),
            token: None,
            test_hooks: self.test_hooks,
        }
    }
}

/// A loaded spec with the facts needed to resolve its relative paths.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The parsed spec.
    pub spec: ImageSpec,
    /// The spec file.
    pub path: PathBuf,
    /// Its folder; relative paths in the spec start here.
    pub dir: PathBuf,
    /// The exact bytes read (for provenance and reproducible seeds).
    pub bytes: Vec<u8>,
}

impl LoadedSpec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<LoadedSpec, BuildError> {
        let bytes = std::fs::read(path).map_err(|e| BuildError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let spec: ImageSpec = parse_toml(path, &bytes)?;
        spec.validate(path)?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(LoadedSpec {
            spec,
            path: path.to_path_buf(),
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            },
            bytes,
        })
    }

    /// Resolves a path the spec gives relative to its own folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.dir.join(p)
    }
}

// The rules serde cannot express, apart from the spec's shape.
#[path = "spec_validate.rs"]
mod validate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_refuse_escapes() {
        assert_eq!(ImagePath::new("/usr/bin/").unwrap().rel(), "usr/bin");
        assert_eq!(ImagePath::new("./etc/x").unwrap().rel(), "etc/x");
        assert!(ImagePath::new("/usr/../etc").is_err());
        assert!(ImagePath::new("/usr//bin").is_err());
        assert_eq!(ImagePath::new("/a/b").unwrap().parent().unwrap().rel(), "a");
    }

    #[test]
    fn mode_accepts_octal_text_and_integers() {
        #[derive(Deserialize)]
        struct T {
            m: Mode,
        }
        assert_eq!(toml::from_str::<T>("m = \"0644\"").unwrap().m, Mode(0o644));
        assert_eq!(toml::from_str::<T>("m = 0o4755").unwrap().m, Mode(0o4755));
        assert!(toml::from_str::<T>("m = \"999\"").is_err());
    }
}
