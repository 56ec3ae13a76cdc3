//! Power cuts at seeded random moments of an update, each from the same saved healthy machine
//! (QEMU resumes it, so a cut costs no cold boot): the seed fixes the plan, and the summary
//! counts what came up and whether the cuts hit the update at all.

use super::*;

/// A machine booted from image 1.0.0 to healthy, with `/data/precious` written and synced,
/// saved once per test process so every random cut starts from the same moment.
fn healthy_v1() -> Result<&'static Snapshot, String> {
    static SAVED: std::sync::OnceLock<Result<Snapshot, String>> = std::sync::OnceLock::new();
    let save = || -> anyhow::Result<Snapshot> {
        let dir = workspace().join("target/e2e-snapshot");
        let _ = std::fs::remove_dir_all(&dir);
        let (tmp, disk) = copy_disk(&image("1.0.0").dir.join("disk.img"))?;
        let mut vm = boot(&disk, tmp.path(), |_| {})?;
        healthy_with_precious_data(&mut vm)?;
        // A smaller memory image resumes faster; the guest reads back what it needs.
        vm.shell("echo 3 > /proc/sys/vm/drop_caches", SHORT)?;
        vm.save(&dir)
    };
    SAVED
        .get_or_init(|| save().map_err(|e| format!("saving a healthy version 1: {e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

#[test]
fn cuts_at_seeded_random_moments() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = env("SLATE_GAUNTLET_RANDOM", 3);
    assert!(
        n >= 1,
        "SLATE_GAUNTLET_RANDOM=0 would pass without a single cut; give at least 1"
    );
    let seed = env("SLATE_GAUNTLET_SEED", 20_261_122);
    let jobs = env("SLATE_GAUNTLET_JOBS", 1).max(1);
    eprintln!("random power cuts: {n}, seed {seed}, {jobs} at a time (replay with SLATE_GAUNTLET_SEED={seed} SLATE_GAUNTLET_RANDOM={n} SLATE_GAUNTLET_JOBS={jobs})");
    // The plan depends on the seed alone; the cut times are relative to the upload, so a
    // replay should use the same number of jobs (the machine's speed moves the moment too).
    let mut x = seed | 1;
    let plan: Vec<(u64, Option<Loss>)> = (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half in the upload and install (a test bundle installs in a few seconds), half
            // anywhere up to the commit (a reboot and a boot later, about 20 s under TCG):
            // 0.2 s to 8 s, or to 24 s, after the upload starts.
            let span = if (x >> 40) % 2 == 0 { 8_000 } else { 24_000 };
            let ms = 200 + x % span;
            // Every other random cut loses a seeded random subset of the unflushed writes.
            (ms, (i % 2 == 1).then_some(Loss::Random(x)))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(&(ms, volatile)) = plan.get(i) else {
                    return;
                };
                let started = std::time::Instant::now();
                let r = healthy_v1()
                    .map_err(|e| (Broken::Other, e))
                    .and_then(|snap| {
                        cut_and_recover(Start::Resume(snap), Cut::After(ms), false, volatile)
                    });
                let what = match &r {
                    Ok(ok) => format!(
                        "ok, came up with {}{}",
                        ok.version,
                        ok.esp_repaired
                            .as_ref()
                            .map(|w| format!(", ESP repaired ({w})"))
                            .unwrap_or_default()
                    ),
                    Err((k, _)) => format!("{k:?}"),
                };
                eprintln!(
                    "  cut {}/{n} at {ms} ms{}: {what} ({:.0} s)",
                    i + 1,
                    if volatile.is_some() {
                        " (cache loses writes)"
                    } else {
                        ""
                    },
                    started.elapsed().as_secs_f64()
                );
                outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    let new_version = outcomes
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|ok| ok.version == "1.1.0"))
        .count();
    let repairs = outcomes
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|ok| ok.esp_repaired.is_some()))
        .count();
    let during_update = outcomes
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|ok| ok.during_update))
        .count();
    let failures: Vec<(Broken, String)> = outcomes.into_iter().filter_map(Result::err).collect();
    let count = |k: Broken| failures.iter().filter(|(b, _)| *b == k).count();
    eprintln!(
        "gauntlet summary: {n} random cuts (seed {seed}): {} bricks, {} data losses, {} ESP damaged, {} other failures; {new_version} came up with the new version, {repairs} needed an ESP repair, {during_update} hit the update before it was decided",
        count(Broken::Brick),
        count(Broken::DataLoss),
        count(Broken::Esp),
        count(Broken::Other)
    );
    assert!(
        failures.is_empty(),
        "{} cut(s) broke a promise:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(k, w)| format!("{k:?}: {w}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        during_update > 0,
        "none of the {n} random cuts hit an update before it was decided (seed {seed}); they tested nothing"
    );
}

/// The random cuts start from a resumed machine: it must be the healthy version 1 it was when
/// saved (agent answering, /data mounted with the synced file, console shell alive).
#[test]
fn the_saved_healthy_machine_resumes() {
    let snap = healthy_v1().unwrap();
    let (tmp, disk) = copy_disk(&snap.disk).unwrap();
    let started = std::time::Instant::now();
    let mut vm = boot(&disk, tmp.path(), |c| c.resume = Some(snap.clone())).unwrap();
    let deadline = started + SHORT;
    let status = loop {
        match vm.http("GET", "/v1/status") {
            Ok((200, body)) => break body,
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!(
                "the resumed agent does not answer: {other:?}\n{}",
                vm.tail(10)
            ),
        }
    };
    eprintln!(
        "resumed and answering in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(status.contains("\"version\":\"1.0.0\""), "{status}");
    assert!(status.contains("\"boot\":{\"state\":\"good\"}"), "{status}");
    let mark = vm.mark();
    vm.send("\n").unwrap();
    vm.wait_prompt("slate# ", mark, SHORT).unwrap();
    let r = vm.shell("cat /data/precious", SHORT).unwrap();
    assert!(precious_intact(&r), "{r}");
}
