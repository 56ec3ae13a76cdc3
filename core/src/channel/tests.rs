use super::release::Reason;
use super::*;
use crate::Version;
use proptest::prelude::*;

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

const WAVES: &str = r#"
[[wave]]
start_after = "1h"
fleet_percentage = 1
[[wave]]
start_after = "4h"
fleet_percentage = 10
[[wave]]
start_after = "1d"
fleet_percentage = 100
end_after = "2d"
"#;

#[test]
fn spans_parse_and_print() {
    assert_eq!("30s".parse::<Span>().unwrap(), Span(30));
    assert_eq!("10m".parse::<Span>().unwrap(), Span(600));
    assert_eq!("4h".parse::<Span>().unwrap(), Span(14_400));
    assert_eq!("2d".parse::<Span>().unwrap(), Span(172_800));
    assert_eq!("1w".parse::<Span>().unwrap(), Span(604_800));
    assert_eq!("90".parse::<Span>().unwrap(), Span(90));
    assert_eq!(Span(7200).to_string(), "2h");
    assert_eq!(Span(90).to_string(), "90s");
    let e = "4 hours".parse::<Span>().unwrap_err();
    assert!(e.to_string().contains("unknown unit"), "{e}");
    assert!("h".parse::<Span>().is_err());
    assert!("99999999999999999999d".parse::<Span>().is_err());
}

#[test]
fn a_wave_file_resolves_into_seed_ranges_and_times() {
    let file = WaveFile::parse(WAVES).unwrap();
    let waves = file.resolve(1000);
    let w = &waves.0;
    assert_eq!(w.len(), 3);
    // 1% of 2048 seeds, rounded up; the ranges follow each other and end at 2048.
    assert_eq!((w[0].first_seed, w[0].end_seed), (0, 21));
    assert_eq!((w[1].first_seed, w[1].end_seed), (21, 205));
    assert_eq!((w[2].first_seed, w[2].end_seed), (205, SEEDS));
    // A wave opens until the next one starts; the last until its end_after.
    assert_eq!((w[0].start, w[0].end), (1000 + 3600, 1000 + 4 * 3600));
    assert_eq!((w[2].start, w[2].end), (1000 + 86_400, 1000 + 2 * 86_400));
}

#[test]
fn a_device_time_counts_from_its_waves_first_seed() {
    let waves = WaveFile::parse(WAVES).unwrap().resolve(0);
    let at = |s| waves.ready_at(Seed::try_from(s).unwrap(), 0);
    // The first seed of each wave is ready when its wave starts (not later, as it would be
    // if the offset were counted from seed 0).
    assert_eq!(at(0), 3600);
    assert_eq!(at(21), 4 * 3600);
    assert_eq!(at(205), 86_400);
    // Halfway through wave 2's seeds is halfway through its time.
    let mid = 21 + (205 - 21) / 2;
    assert_eq!(at(mid), 4 * 3600 + (86_400 - 4 * 3600) / 2);
    assert!(at(SEEDS - 1) < 2 * 86_400);
    assert_eq!(waves.wave_of(Seed::try_from(20).unwrap()), Some(0));
    assert_eq!(waves.wave_of(Seed::try_from(21).unwrap()), Some(1));
}

#[test]
fn seeds_above_every_wave_wait_for_its_end() {
    let waves = WaveFile::parse("[[wave]]\nstart_after = \"1h\"\nfleet_percentage = 50\n")
        .unwrap()
        .resolve(0);
    assert_eq!(waves.wave_of(Seed::try_from(2000).unwrap()), None);
    assert_eq!(waves.ready_at(Seed::try_from(2000).unwrap(), 0), 3600);
    assert_eq!(
        Waves::default().ready_at(Seed::try_from(7).unwrap(), 42),
        42
    );
}

#[test]
fn bad_wave_files_name_the_wave_and_field() {
    let e = |t: &str| WaveFile::parse(t).unwrap_err().to_string();
    assert!(e("").contains("no [[wave]]"));
    let two = |a: &str, p: u32, b: &str, q: u32| {
        format!("[[wave]]\nstart_after = \"{a}\"\nfleet_percentage = {p}\n[[wave]]\nstart_after = \"{b}\"\nfleet_percentage = {q}\n")
    };
    assert_eq!(
        e(&two("2h", 1, "1h", 5)),
        "wave 2: start_after must be larger than the previous wave's"
    );
    assert_eq!(
        e(&two("1h", 5, "2h", 5)),
        "wave 2: fleet_percentage must be larger than the previous wave's"
    );
    assert!(e(&two("1h", 0, "2h", 5)).starts_with("wave 1: fleet_percentage = 0"));
    assert!(e(&two("1h", 5, "2h", 101)).starts_with("wave 2: fleet_percentage = 101"));
    assert!(
        e("[[wave]]\nstart_after = \"1h\"\nfleet_percentage = 5\nend_after = \"30m\"\n")
            .starts_with("wave 1: end_after")
    );
    assert!(e("[[wave]]\nstart = \"1h\"\n").contains("unknown field"));
    assert!(
        e("[[wave]]\nstart_after = \"1 hour\"\nfleet_percentage = 5\n").contains("unknown unit")
    );
    WaveFile::default_fleet().check().unwrap();
}

fn update(version: &str, waves: Waves) -> Update {
    Update {
        product: "slate".into(),
        board: "qemu-x86_64".into(),
        version: v(version),
        target: format!("slate-qemu-x86_64-{version}.slate"),
        published: 0,
        waves,
    }
}

fn device<'a>(version: &'a Version, seed: u32) -> DeviceView<'a> {
    DeviceView {
        product: "slate",
        board: "qemu-x86_64",
        version,
        seed: Seed::try_from(seed).unwrap(),
        failed: &[],
        version_lock: None,
        ignore_waves: false,
    }
}

#[test]
fn a_device_takes_the_newest_release_when_its_wave_comes() {
    let waves = WaveFile::parse(WAVES).unwrap().resolve(0);
    let mut m = ReleaseManifest::default();
    m.publish(update("1.1.0", Waves::default()));
    m.publish(update("2.0.0", waves));
    let one = v("1.0.0");
    // Seed 0 is in the first wave (1h), seed 1000 in the last (1d..2d).
    match decide(&m, &device(&one, 1000), 3600) {
        Decision::Wait { update, ready_at } => {
            assert_eq!(update.version, v("2.0.0"));
            assert!(ready_at > 86_400 && ready_at < 2 * 86_400);
        }
        d => panic!("{d:?}"),
    }
    assert!(matches!(
        decide(&m, &device(&one, 0), 3600),
        Decision::Install { update, reason: Reason::Upgrade } if update.version == v("2.0.0")
    ));
    let mut eager = device(&one, 1000);
    eager.ignore_waves = true;
    assert!(matches!(decide(&m, &eager, 0), Decision::Install { .. }));
    let two = v("2.0.0");
    assert_eq!(
        decide(&m, &device(&two, 0), 10 * 86_400),
        Decision::UpToDate
    );
}

#[test]
fn a_failed_version_is_skipped_and_max_version_rolls_back() {
    let mut m = ReleaseManifest::default();
    m.publish(update("1.0.0", Waves::default()));
    m.publish(update("2.0.0", Waves::default()));
    let one = v("1.0.0");
    let failed = [v("2.0.0")];
    let mut d = device(&one, 5);
    d.failed = &failed;
    assert_eq!(decide(&m, &d, 0), Decision::UpToDate);

    m.set_max_version("slate", "qemu-x86_64", Some(v("1.0.0")));
    let two = v("2.0.0");
    assert!(matches!(
        decide(&m, &device(&two, 5), 0),
        Decision::Install { update, reason: Reason::RollBack } if update.version == one
    ));
    assert_eq!(decide(&m, &device(&one, 5), 0), Decision::UpToDate);
    m.set_max_version("slate", "qemu-x86_64", None);
    assert!(m.limits.is_empty());
}

#[test]
fn neither_the_lever_nor_a_lock_takes_a_version_that_failed_here() {
    let mut m = ReleaseManifest::default();
    m.publish(update("1.0.0", Waves::default()));
    m.publish(update("1.5.0", Waves::default()));
    m.publish(update("2.0.0", Waves::default()));
    m.set_max_version("slate", "qemu-x86_64", Some(v("1.5.0")));
    let two = v("2.0.0");
    let failed = [v("1.5.0")];
    let mut d = device(&two, 5);
    d.failed = &failed;
    // Back to the newest version at or below the lever that did not fail here.
    assert!(matches!(
        decide(&m, &d, 0),
        Decision::Install { update, reason: Reason::RollBack } if update.version == v("1.0.0")
    ));
    let lock = v("1.5.0");
    d.version_lock = Some(&lock);
    assert_eq!(decide(&m, &d, 0), Decision::UpToDate);
}

#[test]
fn a_version_lock_wins_over_waves() {
    let mut m = ReleaseManifest::default();
    m.publish(update("1.0.0", Waves::default()));
    m.publish(update("2.0.0", WaveFile::default_fleet().resolve(0)));
    let two = v("2.0.0");
    let one = v("1.0.0");
    let mut d = device(&two, 2047);
    d.version_lock = Some(&one);
    assert!(matches!(
        decide(&m, &d, 0),
        Decision::Install {
            reason: Reason::Locked,
            ..
        }
    ));
    let mut d = device(&one, 2047);
    d.version_lock = Some(&one);
    assert_eq!(decide(&m, &d, 0), Decision::UpToDate);
}

#[test]
fn republishing_a_version_replaces_it() {
    let mut m = ReleaseManifest::default();
    m.publish(update("2.0.0", Waves::default()));
    m.publish(update("2.0.0", WaveFile::default_fleet().resolve(5)));
    assert_eq!(m.updates.len(), 1);
    assert!(!m.updates[0].waves.0.is_empty());
    let json = serde_json::to_string(&m).unwrap();
    let back: ReleaseManifest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn backoff_doubles_up_to_its_cap_and_polls_spread() {
    let p = Poll {
        interval: 1000,
        jitter_percent: 10,
        backoff_base: 30,
        backoff_max: 600,
    };
    assert_eq!(next_poll(&p, 0), 900);
    assert_eq!(next_poll(&p, 200), 1100);
    assert_eq!(backoff_delay(&p, 1, 0), 15);
    assert_eq!(backoff_delay(&p, 1, 15), 30);
    assert_eq!(backoff_delay(&p, 3, 0), 60);
    assert_eq!(backoff_delay(&p, 30, 300), 600);
    assert!(backoff_delay(&p, 30, u64::MAX) <= 600);
}

proptest! {
    #[test]
    fn seeds_open_in_order_within_their_wave(a in 0u32..SEEDS, b in 0u32..SEEDS, published in 0u64..1u64 << 40) {
        let waves = WaveFile::default_fleet().resolve(published);
        let (lo, hi) = (a.min(b), a.max(b));
        let t = |s| waves.ready_at(Seed::try_from(s).unwrap(), published);
        // A lower seed is never ready later, and every seed is ready within the rollout.
        prop_assert!(t(lo) <= t(hi));
        prop_assert!(t(lo) >= published + 3600);
        prop_assert!(t(hi) <= published + 168 * 3600);
    }

    #[test]
    fn polls_and_backoffs_stay_in_their_bounds(draw: u64, failures in 1u32..100) {
        let p = Poll::default();
        let n = next_poll(&p, draw);
        prop_assert!(n >= p.interval * 3 / 4 && n <= p.interval * 5 / 4);
        let b = backoff_delay(&p, failures, draw);
        prop_assert!(b >= 1 && b <= p.backoff_max);
    }

    #[test]
    fn every_random_number_makes_a_valid_seed(r: u64) {
        prop_assert!(Seed::from_random(r).get() < SEEDS);
    }
}

#[test]
fn the_scheduler_backs_off_and_wakes_for_its_wave() {
    let p = Poll {
        interval: 1000,
        jitter_percent: 0,
        backoff_base: 10,
        backoff_max: 100,
    };
    let mut s = Scheduler::default();
    assert_eq!(s.next_check(&p, 0, Outcome::Failed, 5), 5 + 5);
    assert_eq!(s.next_check(&p, 0, Outcome::Failed, 0), 10);
    assert_eq!(s.failures, 2);
    assert_eq!(
        s.next_check(
            &p,
            0,
            Outcome::Checked {
                ready_at: Some(300)
            },
            0
        ),
        300
    );
    assert_eq!(s.failures, 0);
    assert_eq!(
        s.next_check(
            &p,
            0,
            Outcome::Checked {
                ready_at: Some(5000)
            },
            0
        ),
        1000
    );
    assert_eq!(
        s.next_check(&p, 0, Outcome::Checked { ready_at: None }, 0),
        1000
    );
}

#[test]
fn a_failing_target_backs_off_alone_and_a_refused_one_is_not_fetched_again() {
    let poll = Poll {
        interval: 3600,
        jitter_percent: 0,
        backoff_base: 60,
        backoff_max: 3600,
    };
    let flaky = crate::Digest32([1; 32]);
    let refused = crate::Digest32([2; 32]);
    let next = crate::Digest32([3; 32]);
    let mut b = TargetBackoff::default();
    // draw 0: the lower half of the equal-jitter range.
    assert_eq!(b.failed(flaky, false, &poll, 1000, 0), Some(1030));
    assert_eq!(b.may_fetch(&flaky, 1029), Err((Some(1030), 1)));
    assert_eq!(b.may_fetch(&flaky, 1030), Ok(()));
    assert_eq!(b.failed(flaky, false, &poll, 1030, 0), Some(1090));
    assert_eq!(b.failed(refused, true, &poll, 1030, 0), None);
    assert_eq!(b.may_fetch(&refused, u64::MAX), Err((None, 1)));
    // Another target (the next release) is not held back by theirs.
    assert_eq!(b.may_fetch(&next, 1031), Ok(()));
    b.forget(&flaky);
    assert_eq!(b.may_fetch(&flaky, 1031), Ok(()));
}
