//! Power cuts at every durable step of an update (DESIGN §6) and at seeded random moments:
//! after each, a cold boot from the same disk with fresh firmware state must reach a healthy
//! slot running the old or the new version, the ESP must pass `fsck.fat -n`, synced /data
//! must be intact, and a following update must commit.
//!
//! A failure names the step or seed and the serial logs needed to replay it.
//! `SLATE_GAUNTLET_RANDOM=N` sets the number of random cuts (default 3),
//! `SLATE_GAUNTLET_SEED` their seed (default fixed, so CI repeats itself) and
//! `SLATE_GAUNTLET_JOBS` how many machines cut at once (default 1). `SLATE_GAUNTLET_KEEP=1`
//! keeps every cut's work folder (disk, serial logs), not only a failing one's.

use slate_core::api::{CutPoint, Kind};
use slate_core::layout::Slot;
use slate_imager::operator::push;
use slate_imager::progress::Progress;
use slate_qemu::{Loss, Snapshot};
use slate_tests::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(900);
const SHORT: Duration = Duration::from_secs(30);

/// Where the power is cut.
enum Cut {
    /// When the agent reports reaching this step.
    Step(CutPoint),
    /// This many milliseconds after the upload starts.
    After(u64),
}

/// What a cut broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// No slot came up healthy.
    Brick,
    /// A synced /data file was lost.
    DataLoss,
    /// The ESP does not pass fsck.fat -n.
    Esp,
    /// The following update did not commit, or another promise failed.
    Other,
}

/// What the recovery did that a test may want to see.
#[derive(Debug)]
struct Recovered {
    /// What the agent reported repairing on the ESP (`slate: esp repaired: …`) on the cold
    /// boot, if anything.
    esp_repaired: Option<String>,
    /// The version that came up healthy after the cut.
    version: String,
    /// Whether the cut hit the update after the device started installing and before it
    /// decided about it (`installing`, no `committed` yet): a cut before the install started
    /// or after the decision tests nothing about the update.
    during_update: bool,
}

type Outcome = Result<Recovered, (Broken, String)>;

/// The kind of image the machine runs: plain (`.conf` entries, kernel and initrd on the ESP)
/// or Secure Boot (signed UKIs as entries, booted on OVMF with the test keys enrolled).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Plain,
    SecureBoot,
}

impl Family {
    /// The image of this family at `version`; `failing` adds a health check that fails.
    fn image(self, version: &str, failing: bool) -> &'static Image {
        let variant = match (self, failing) {
            (Family::Plain, false) => Variant::Demo,
            (Family::Plain, true) => Variant::FailingHealth,
            (Family::SecureBoot, false) => Variant::SecureBoot,
            (Family::SecureBoot, true) => Variant::SecureBootFailingHealth,
        };
        image_variant(version, variant)
    }

    /// What the machine's firmware needs.
    fn firmware(self, c: &mut slate_qemu::VmConfig) {
        if self == Family::SecureBoot {
            c.secure_boot_vars = Some(secure_boot_keys().join("OVMF_VARS.fd"));
        }
    }
}

/// How the machine that is cut gets to a healthy version 1 with synced data on /data.
#[derive(Clone, Copy)]
enum Start {
    /// Boot it from a fresh copy of the image (the step cuts: their cut point is read at
    /// boot).
    Cold,
    /// Resume the saved machine of `healthy_v1` (the random cuts: saves a boot per cut).
    Resume(&'static Snapshot),
}

/// What `/data/precious` holds: random for each test process, so that no other output can
/// contain it (cat's own "can't open '/data/precious'" names the file, not its contents).
fn precious_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("tok{nanos:x}p{:x}", std::process::id())
    })
}

/// `cat /data/precious`'s output shows the file intact: its token, and cat's success.
fn precious_intact(cat: &str) -> bool {
    cat.contains(precious_token()) && cat.ends_with("exit=0")
}

/// The data check fails on what a lost file looks like: cat's own error names the file (the
/// check this replaced matched it), and the shell's status must be cat's success.
#[test]
fn the_data_check_fails_when_the_file_is_gone() {
    let gone = "cat: can't open '/data/precious': No such file or directory\nexit=1";
    assert!(!precious_intact(gone));
    assert!(
        !precious_intact("precious\nexit=0"),
        "the file name is not its contents"
    );
    assert!(!precious_intact(&format!("{}\nexit=1", precious_token())));
    assert!(precious_intact(&format!("{}\nexit=0", precious_token())));
}

/// Waits for a cold-booted version 1 to be healthy, then writes and syncs `/data/precious`,
/// the file every cut must find again.
fn healthy_with_precious_data(vm: &mut slate_qemu::Vm) -> anyhow::Result<()> {
    vm.wait_for(&Kind::Healthy.on(Slot::A), BOOT_TIMEOUT)?;
    vm.wait_prompt("slate# ", 0, SHORT)?;
    let w = vm.shell(
        &format!("echo {} > /data/precious && sync", precious_token()),
        SHORT,
    )?;
    anyhow::ensure!(w.ends_with("exit=0"), "writing /data failed: {w}");
    Ok(())
}

fn describe(cut: &Cut) -> String {
    match cut {
        Cut::Step(s) => format!("step {s}"),
        Cut::After(ms) => format!("{ms} ms after the upload started"),
    }
}

/// One cut and the checks after it; `volatile` serves the disk with a write cache that loses
/// unflushed writes at the cut. The work folder (disk, serial logs) is kept when a promise
/// breaks, so the logs the failure names can be read.
fn cut_and_recover(
    start: Start,
    cut: Cut,
    failing_update: bool,
    volatile: Option<Loss>,
) -> Outcome {
    cut_and_recover_family(Family::Plain, start, cut, failing_update, volatile)
}

fn cut_and_recover_family(
    family: Family,
    start: Start,
    cut: Cut,
    failing_update: bool,
    volatile: Option<Loss>,
) -> Outcome {
    let from = match start {
        Start::Cold => family.image("1.0.0", false).dir.join("disk.img"),
        Start::Resume(snap) => snap.disk.clone(),
    };
    let (tmp, disk) = copy_disk(&from).map_err(|e| (Broken::Other, format!("{e:#}")))?;
    let r = cut_and_recover_in(
        tmp.path(),
        &disk,
        (family, start),
        cut,
        failing_update,
        volatile,
    );
    if r.is_err() {
        let kept = tmp.keep();
        eprintln!("gauntlet: kept {} for the failure below", kept.display());
    } else if std::env::var_os("SLATE_GAUNTLET_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("gauntlet: kept {} (SLATE_GAUNTLET_KEEP)", kept.display());
    }
    r
}

fn cut_and_recover_in(
    work: &std::path::Path,
    disk: &std::path::Path,
    (family, start): (Family, Start),
    cut: Cut,
    failing_update: bool,
    volatile: Option<Loss>,
) -> Outcome {
    let update = if failing_update {
        bundle(family.image("1.2.0", true))
    } else {
        bundle(family.image("1.1.0", false))
    };
    let next = bundle(family.image("1.3.0", false));
    let what = format!(
        "{}{}{}",
        describe(&cut),
        if volatile.is_some() {
            " on the volatile-cache disk"
        } else {
            ""
        },
        if family == Family::SecureBoot {
            " (Secure Boot image)"
        } else {
            ""
        }
    );
    let harness = |e: anyhow::Error| (Broken::Other, format!("[{what}] harness: {e:#}"));
    let mut vm = boot(disk, &work.join("before"), |c| {
        family.firmware(c);
        c.volatile_cache = volatile;
        if let Cut::Step(s) = &cut {
            c.fw_cfg.push(("cut-at".into(), s.to_string()));
        }
        if let Start::Resume(snap) = start {
            c.resume = Some(snap.clone());
        }
    })
    .map_err(harness)?;
    if let Start::Cold = start {
        healthy_with_precious_data(&mut vm).map_err(harness)?;
    }
    let url = vm.agent_url().unwrap_or_default();
    let acc = access(work);
    // A cut in a staged update's steps: the push stages it, and an operator's apply (with
    // `now`: the test image asks no application) applies it.
    let staged = matches!(&cut, Cut::Step(s) if CutPoint::STAGE.contains(s));
    let upload = std::thread::spawn(move || {
        if !staged {
            return push::push(&url, &update, &acc, true, None, Progress::new(true));
        }
        let options = push::Options {
            reboot: true,
            force: false,
            now: false,
            stage: true,
            wait: None,
        };
        let p = push::push_with(&url, &update, &acc, options, Progress::new(true))?;
        slate_imager::operator::apply::apply(&url, &acc, true, None, Progress::new(true))?;
        Ok(p)
    });
    match cut {
        Cut::Step(s) => {
            vm.wait_for(&format!("{} {s}", Kind::CutPoint.prefix()), LONG)
                .map_err(harness)?;
        }
        Cut::After(ms) => std::thread::sleep(Duration::from_millis(ms)),
    }
    let during_update = vm.saw(&Kind::Installing.prefix()) && !vm.saw(&Kind::Committed.prefix());
    vm.power_cut();
    let first_log = vm.log_path().to_path_buf();
    drop(vm);
    // The upload either finished (installed) or was cut with the machine; a refusal means the
    // update never started and the cut hit nothing.
    let pushed = upload.join().map_err(|_| {
        (
            Broken::Other,
            format!("[{what}] the upload thread panicked"),
        )
    })?;
    if let Err(e) = &pushed {
        if format!("{e:#}").contains("refused the bundle") {
            return Err((
                Broken::Other,
                format!("[{what}] the device refused the update, so the cut hit no update: {e:#}"),
            ));
        }
    }

    // Cold boot, fresh firmware variables, no cut point.
    let mut vm = boot(disk, &work.join("after"), |c| {
        family.firmware(c);
        c.volatile_cache = volatile;
    })
    .map_err(harness)?;
    let logs = format!(
        "[{what}] serial logs {} and {}",
        first_log.display(),
        vm.log_path().display()
    );
    let line = vm
        .wait_for(&format!("{} slot=", Kind::Healthy.prefix()), LONG)
        .map_err(|e| {
            (
                Broken::Brick,
                format!("{logs}: no healthy slot after the cut: {e:#}"),
            )
        })?;
    let esp_repaired = std::fs::read_to_string(vm.log_path())
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.split_once(&format!("{} ", Kind::EspRepaired.prefix())))
        .map(|(_, what)| what.trim().to_string());
    let version = line
        .text
        .split("version=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let allowed: &[&str] = if failing_update {
        &["1.0.0"]
    } else {
        &["1.0.0", "1.1.0"]
    };
    if !allowed.contains(&version.as_str()) {
        return Err((
            Broken::Brick,
            format!("{logs}: came up with version {version:?}, expected one of {allowed:?}"),
        ));
    }
    // The slot is good already (the old version, or a commit before the cut), or the
    // trial boot commits right after the healthy marker.
    let good = |vm: &slate_qemu::Vm| {
        vm.http("GET", "/v1/status")
            .map(|(_, body)| (body.contains("\"boot\":{\"state\":\"good\"}"), body))
    };
    let (is_good, _) = good(&vm).map_err(harness)?;
    if !is_good {
        let _ = vm.wait_for(&Kind::Committed.prefix(), SHORT);
        let (is_good, body) = good(&vm).map_err(harness)?;
        if !is_good {
            return Err((
                Broken::Other,
                format!("{logs}: healthy but neither committed nor good: {body}"),
            ));
        }
    }
    // A staged update is kept whole or forgotten: never another version, never half.
    let st = vm.http("GET", "/v1/status").map_err(harness)?.1;
    let staged: Option<slate_core::api::StagedStatus> =
        serde_json::from_str::<slate_core::api::Status>(&st)
            .map_err(|e| harness(e.into()))?
            .staged;
    if let Some(s) = staged.filter(|s| s.version != "1.1.0") {
        return Err((
            Broken::Other,
            format!(
                "{logs}: staged {} after the cut, expected 1.1.0 or none",
                s.version
            ),
        ));
    }
    vm.wait_prompt("slate# ", 0, SHORT).map_err(harness)?;
    let r = vm.shell("cat /data/precious", SHORT).map_err(harness)?;
    if !precious_intact(&r) {
        return Err((
            Broken::DataLoss,
            format!("{logs}: synced /data file lost: {r}"),
        ));
    }

    // The next update works.
    let url = vm.agent_url().unwrap_or_default();
    match push::push(
        &url,
        &next,
        &access(work),
        true,
        Some(LONG),
        Progress::new(true),
    ) {
        Ok(p)
            if p.outcome
                .as_ref()
                .and_then(|s| s.last_attempt.as_ref())
                .is_some_and(|a| a.outcome == slate_core::api::Outcome::Committed) => {}
        Ok(p) => {
            return Err((
                Broken::Other,
                format!(
                    "{logs}: the following update did not commit: {:?}",
                    p.outcome
                ),
            ))
        }
        Err(e) => {
            return Err((
                Broken::Other,
                format!("{logs}: the following update failed: {e:#}"),
            ))
        }
    }
    vm.shutdown(Duration::from_secs(60)).map_err(harness)?;

    if let Err(e) = esp_fsck(disk, work) {
        return Err((Broken::Esp, format!("{logs}: the ESP is not clean: {e}")));
    }
    Ok(Recovered {
        esp_repaired,
        version,
        during_update,
    })
}

macro_rules! cut_at {
    ($name:ident, $step:expr, $failing:expr) => {
        mod $name {
            use super::*;

            #[test]
            #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts the volatile-cache twin; the random cuts cover plain disks"]
            fn plain_disk() {
                if let Err((kind, why)) =
                    cut_and_recover(Start::Cold, Cut::Step($step), $failing, None)
                {
                    panic!("{kind:?}: {why}");
                }
            }

            #[test]
            fn volatile_cache_disk() {
                if let Err((kind, why)) =
                    cut_and_recover(Start::Cold, Cut::Step($step), $failing, Some(Loss::All))
                {
                    panic!("{kind:?}: {why}");
                }
            }
        }
    };
}

/// A step whose cuts both run in the full gauntlet only: CI keeps one cut per stage of the
/// update (writing the slot, the ESP's window, the trial boot, applying, marking bad) and the
/// seeded random cuts, which land between these steps too.
macro_rules! cut_at_full {
    ($name:ident, $step:expr, $failing:expr) => {
        mod $name {
            use super::*;

            #[test]
            #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts one step per stage and at random moments"]
            fn plain_disk() {
                if let Err((kind, why)) =
                    cut_and_recover(Start::Cold, Cut::Step($step), $failing, None)
                {
                    panic!("{kind:?}: {why}");
                }
            }

            #[test]
            #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts one step per stage and at random moments"]
            fn volatile_cache_disk() {
                if let Err((kind, why)) =
                    cut_and_recover(Start::Cold, Cut::Step($step), $failing, Some(Loss::All))
                {
                    panic!("{kind:?}: {why}");
                }
            }
        }
    };
}

cut_at_full!(
    cut_after_the_idle_entry_is_removed,
    CutPoint::EntryRemoved,
    false
);
cut_at!(
    cut_while_the_slot_is_half_written,
    CutPoint::SlotPartlyWritten,
    false
);
cut_at_full!(cut_after_the_slot_is_written, CutPoint::SlotWritten, false);
/// A cut inside the ESP's read-write window leaves its dirty bit set (Linux writes it at
/// once); the agent must repair the volume on the next boot, or `fsck.fat -n` fails.
mod cut_while_the_esp_is_writable {
    use super::*;

    #[test]
    fn plain_disk() {
        match cut_and_recover(
            Start::Cold,
            Cut::Step(CutPoint::BootFilesWriting),
            false,
            None,
        ) {
            Err((kind, why)) => panic!("{kind:?}: {why}"),
            Ok(r) => {
                let what = r
                    .esp_repaired
                    .expect("the cold boot did not repair the ESP");
                eprintln!("ESP repaired after the cut: {what}");
            }
        }
    }

    #[test]
    #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts the plain-disk twin, which must see the repair"]
    fn volatile_cache_disk() {
        if let Err((kind, why)) = cut_and_recover(
            Start::Cold,
            Cut::Step(CutPoint::BootFilesWriting),
            false,
            Some(Loss::All),
        ) {
            panic!("{kind:?}: {why}");
        }
    }
}

cut_at_full!(
    cut_after_kernel_and_initrd_are_on_the_esp,
    CutPoint::BootFilesWritten,
    false
);
cut_at_full!(
    cut_after_the_new_entry_is_written,
    CutPoint::EntryWritten,
    false
);
cut_at!(cut_at_the_first_trial_boot, CutPoint::TrialBoot, false);

/// A staged update: cut once its staged entry is written (the device comes up on the old
/// version, the update staged or forgotten), and while it is applied (the entry renamed,
/// the reboot not asked for: the device comes up on either).
mod cut_when_staged {
    use super::*;

    #[test]
    #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts while applying"]
    fn plain_disk() {
        if let Err((kind, why)) =
            cut_and_recover(Start::Cold, Cut::Step(CutPoint::Staged), false, None)
        {
            panic!("{kind:?}: {why}");
        }
    }

    #[test]
    #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts while applying"]
    fn volatile_cache_disk() {
        if let Err((kind, why)) = cut_and_recover(
            Start::Cold,
            Cut::Step(CutPoint::Staged),
            false,
            Some(Loss::All),
        ) {
            panic!("{kind:?}: {why}");
        }
    }
}

mod cut_while_applying {
    use super::*;

    #[test]
    #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts the volatile-cache twin"]
    fn plain_disk() {
        if let Err((kind, why)) =
            cut_and_recover(Start::Cold, Cut::Step(CutPoint::Applying), false, None)
        {
            panic!("{kind:?}: {why}");
        }
    }

    #[test]
    fn volatile_cache_disk() {
        if let Err((kind, why)) = cut_and_recover(
            Start::Cold,
            Cut::Step(CutPoint::Applying),
            false,
            Some(Loss::All),
        ) {
            panic!("{kind:?}: {why}");
        }
    }
}
cut_at_full!(cut_while_health_checks_run, CutPoint::HealthRunning, false);
cut_at_full!(cut_right_after_blessing, CutPoint::Blessed, false);
cut_at!(cut_right_after_marking_bad, CutPoint::MarkedBad, true);
cut_at_full!(cut_during_the_fallback_boot, CutPoint::FallbackBoot, true);

/// The same steps on a Secure Boot image, whose install writes the idle slot's signed UKI as
/// its entry (temporary name, sync, rename) instead of kernel, initrd and a `.conf` entry.
/// CI cuts inside the ESP's read-write window, where the UKI is half written; the rest run in
/// the full e2e.
mod secure_boot_image;

/// Cuts at seeded random moments, each from a saved healthy machine that QEMU resumes.
mod random;
