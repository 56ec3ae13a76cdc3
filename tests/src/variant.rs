//! The image variants the scenarios need: the demo spec, changed as each scenario requires.

/// Image variants the scenarios need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The demo spec as it is.
    Demo,
    /// The demo spec plus a health check that always fails (deadline 20 s).
    FailingHealth,
    /// The demo spec pulling from the test channel ([`crate::channel::channel`]).
    Channel,
    /// The demo spec for a generic PC (`boards/x86_64-uefi.toml`), its address by DHCP, and
    /// a maintenance window in Berlin's zone that is closed for the next days
    /// ([`Variant::closed_window`]).
    Pc,
    /// The demo spec for QEMU's arm64 machine (`boards/qemu-arm64.toml`).
    Arm64,
    /// [`Variant::Arm64`] plus [`Variant::FailingHealth`]'s check.
    Arm64FailingHealth,
    /// The demo spec pulling from the policy scenario's channel
    /// ([`crate::channel::policy_channel`]) with a bandwidth cap of [`Variant::CAP_KIB_S`] and
    /// [`Variant::closed_window`] (UTC).
    CappedWindow,
    /// The demo spec pulling from the delta scenario's channel
    /// ([`crate::channel::delta_channel`]), which publishes chunk indexes.
    Delta,
    /// [`Variant::Delta`] for the arm64 board, pulling from
    /// [`crate::channel::arm64_delta_channel`].
    DeltaArm64,
    /// [`Variant::Delta`] built for Secure Boot (signed UKIs, format-2 bundles), pulling from
    /// [`crate::channel::secure_boot_delta_channel`].
    DeltaSecureBoot,
    /// The demo spec built for Secure Boot: signed UKIs with the test db key
    /// ([`crate::secure_boot_keys`]).
    SecureBoot,
    /// [`Variant::SecureBoot`] plus [`Variant::FailingHealth`]'s check.
    SecureBootFailingHealth,
    /// [`Variant::SecureBoot`] with `/data` sealed by the TPM (`[tpm]` with its defaults:
    /// `seal_data`, not `required`).
    Sealed,
    /// [`Variant::Sealed`] with `[tpm] required = true`.
    SealedRequired,
    /// The demo spec with `/data` sealed by the TPM and no Secure Boot (`[tpm]` alone): the
    /// slots boot unsigned UKIs that carry the signed PCR policies.
    SealedWithoutSecureBoot,
    /// The demo spec reporting to the in-repo DDI fleet server ([`crate::ddi::ddi`]).
    Fleet,
    /// [`Variant::Fleet`] plus [`Variant::FailingHealth`]'s check.
    FleetFailingHealth,
    /// The demo spec reporting to goosebit ([`crate::goosebit::endpoint`]).
    Goosebit,
    /// [`Variant::Goosebit`] plus [`Variant::FailingHealth`]'s check.
    GoosebitFailingHealth,
}

/// The application's consent in test images: it says what `/data/consent` says (an exit
/// status), go when there is no such file, so a scenario can hold an update back from the
/// device's shell.
pub const CONSENT: &str = "\n[update]\nconsent = [\"/bin/busybox\", \"sh\", \"-c\", \"exit $(cat /data/consent 2>/dev/null || echo 0)\"]\nconsent_retry = \"1m\"\n";

impl Variant {
    /// The board the variant is built for.
    pub fn board(self) -> &'static str {
        match self {
            Variant::Pc => "x86_64-uefi",
            Variant::Arm64 | Variant::Arm64FailingHealth | Variant::DeltaArm64 => "qemu-arm64",
            _ => "qemu-x86_64",
        }
    }

    /// The architecture of [`Variant::board`].
    pub fn arch(self) -> slate_core::layout::Arch {
        match self {
            Variant::Arm64 | Variant::Arm64FailingHealth | Variant::DeltaArm64 => {
                slate_core::layout::Arch::Arm64
            }
            _ => slate_core::layout::Arch::X86_64,
        }
    }

    /// The bandwidth cap of [`Variant::CappedWindow`], KiB/s: the demo bundle (about 12 MiB)
    /// then takes about a minute.
    pub const CAP_KIB_S: u32 = 200;

    /// A maintenance window that is closed from now for more than two days: ten minutes on
    /// the weekday three days ahead (the spec changes once a day, so images are rebuilt
    /// then).
    pub fn closed_window() -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0);
        let index = usize::try_from((days + 3) % 7).unwrap_or(0);
        format!("{} 12:00-12:10", DAYS[index])
    }

    /// The demo spec's `text` changed for this variant; `hooks` enables the harness's cut
    /// points (test images only, never production ones).
    pub fn spec(self, mut text: String, hooks: bool) -> String {
        assert!(
            text.contains("[agent]\n"),
            "the demo spec has no [agent] table"
        );
        if hooks {
            text = text.replacen("[agent]\n", "[agent]\ntest_hooks = true\n", 1);
        }
        if matches!(
            self,
            Variant::FailingHealth
                | Variant::Arm64FailingHealth
                | Variant::SecureBootFailingHealth
                | Variant::FleetFailingHealth
                | Variant::GoosebitFailingHealth
        ) {
            text = text.replace("deadline_s = 60", "deadline_s = 20")
                + "\n[[health.check]]\nname = \"always-fails\"\nkind = \"exec\"\ncommand = [\"/bin/busybox\", \"false\"]\n";
        }
        match self {
            Variant::Demo
            | Variant::Arm64
            | Variant::FailingHealth
            | Variant::Arm64FailingHealth => text += CONSENT,
            Variant::Channel => text += &crate::channel::channel().spec_table(),
            Variant::Fleet | Variant::FleetFailingHealth => text += &crate::ddi::ddi().spec_table(),
            Variant::Goosebit | Variant::GoosebitFailingHealth => {
                text += &crate::goosebit::endpoint().spec_table()
            }
            Variant::Delta => text += &crate::channel::delta_channel().spec_table(),
            Variant::DeltaArm64 => text += &crate::channel::arm64_delta_channel().spec_table(),
            Variant::DeltaSecureBoot => {
                let keys = crate::secure_boot_keys();
                text += &crate::channel::secure_boot_delta_channel().spec_table();
                text += &format!(
                    "\n[secure_boot]\nkey = {:?}\ncert = {:?}\n",
                    keys.join("db.key"),
                    keys.join("db.crt")
                );
            }
            Variant::CappedWindow => {
                text += &crate::channel::policy_channel().spec_table();
                text += &format!(
                    "max_kib_s = {}\nwindows = [\"{}\"]\n",
                    Variant::CAP_KIB_S,
                    Variant::closed_window()
                );
            }
            Variant::SecureBoot
            | Variant::SecureBootFailingHealth
            | Variant::Sealed
            | Variant::SealedRequired => {
                let keys = crate::secure_boot_keys();
                // With signed PCR policies: the firmware and systemd-stub boot UKIs that carry
                // `.pcrsig` and `.pcrpkey`. The Secure Boot scenarios run without a TPM and
                // keep /data plain; the sealed one is the TPM scenarios'.
                text += &format!(
                    "\n[secure_boot]\nkey = {:?}\ncert = {:?}\n\n[tpm]\npcr_key = {:?}\n",
                    keys.join("db.key"),
                    keys.join("db.crt"),
                    keys.join("pcr.key")
                );
                match self {
                    Variant::Sealed => {}
                    Variant::SealedRequired => text += "required = true\n",
                    _ => text += "seal_data = false\n",
                }
            }
            Variant::SealedWithoutSecureBoot => {
                text += &format!(
                    "\n[tpm]\npcr_key = {:?}\n",
                    crate::secure_boot_keys().join("pcr.key")
                );
            }
            Variant::Pc => {
                let fixed = "address = \"10.0.2.15/24\"\n";
                assert!(text.contains(fixed), "the demo spec has no static address");
                text = text
                    .replace(fixed, "dhcp = true\n")
                    .replace("board = \"qemu-x86_64\"", "board = \"x86_64-uefi\"");
                text += &format!(
                    "\n[update]\nwindows = [\"{}\"]\ntimezone = \"Europe/Berlin\"\n",
                    Variant::closed_window()
                );
            }
        }
        text
    }
}
