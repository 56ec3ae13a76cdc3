use super::*;
use proptest::prelude::*;

fn w(s: &str) -> Window {
    s.parse().unwrap()
}

fn utc(windows: &[&str]) -> Policy {
    Policy {
        windows: windows.iter().map(|s| w(s)).collect(),
        zone: Zone::fixed("UTC").unwrap(),
        ..Policy::default()
    }
}

/// 2026-12-05 (a Saturday) 00:00 UTC.
const SAT: i64 = 1_796_428_800;

#[test]
fn windows_read_and_print_as_written() {
    for text in [
        "Sat 02:00-04:00",
        "daily 01:00-01:30",
        "Mon,Tue,Wed,Thu,Fri 22:00-02:00",
    ] {
        assert_eq!(w(text).to_string(), text);
    }
    assert_eq!(
        w("Mon-Fri 22:00-02:00"),
        w("Mon,Tue,Wed,Thu,Fri 22:00-02:00")
    );
    assert_eq!(w("Sat-Mon 00:00-24:00").days, 0b110_0001);
    assert_eq!(w("sun 23:00-24:00").end_min, 0);
    for bad in [
        "Sat",
        "Someday 02:00-04:00",
        "Sat 2:00-04:00",
        "Sat 02:00-02:00",
        "Sat 25:00-26:00",
        "Sat 02:00",
        "Sat 24:00-01:00",
    ] {
        assert!(bad.parse::<Window>().is_err(), "{bad}");
    }
    let e = "Sat 02:00".parse::<Window>().unwrap_err();
    assert!(
        e.to_string()
            .contains("\"Sat 02:00\" is not a maintenance window"),
        "{e}"
    );
}

#[test]
fn a_window_crossing_midnight_belongs_to_the_day_it_starts() {
    let ws = utc(&["Fri 22:00-02:00"]);
    let fri = SAT - 86_400;
    assert!(!ws.is_open(fri + 21 * 3600 + 3599));
    assert!(ws.is_open(fri + 22 * 3600));
    assert!(ws.is_open(SAT + 3600));
    assert!(!ws.is_open(SAT + 2 * 3600));
    // Saturday 22:00 is not a Friday.
    assert!(!ws.is_open(SAT + 22 * 3600));
    assert_eq!(
        ws.next_open(SAT + 2 * 3600),
        Some(SAT + 6 * 86_400 + 22 * 3600)
    );
    // No windows: always open.
    assert_eq!(Policy::default().next_open(SAT + 5), Some(SAT + 5));
}

#[test]
fn zones_shift_windows_and_daylight_saving_is_followed() {
    let mut ws = utc(&["Sat 02:00-04:00"]);
    ws.zone = Zone::fixed("+02:00").unwrap();
    // 02:00 at +02:00 is 00:00 UTC.
    assert!(ws.is_open(SAT));
    assert!(!ws.is_open(SAT + 2 * 3600));
    assert_eq!(
        Zone::fixed("UTC-03:30").unwrap().offset_s,
        -(3 * 3600 + 1800)
    );
    assert!(Zone::fixed("+15:00").is_none() && Zone::fixed("Mars/Olympus").is_none());
    // A zone at +1 that moves to +2 at Saturday 01:00 UTC (= 02:00 local, which jumps to
    // 03:00): a window from 02:30 opens at the jump, at 03:00 local.
    ws.zone = Zone {
        name: "test".into(),
        offset_s: 3600,
        changes: vec![(SAT + 3600, 7200)],
    };
    ws.windows = vec![w("Sat 02:30-04:00")];
    assert_eq!(ws.zone.offset_at(SAT + 3599), 3600);
    assert_eq!(ws.zone.offset_at(SAT + 3600), 7200);
    assert_eq!(ws.next_open(SAT), Some(SAT + 3600));
}

/// The definition, independently: open when `t`'s local time lies in an occurrence of a
/// window (an occurrence starts on a listed day at the start time and lasts its length).
fn open_by_definition(ws: &Policy, t: i64) -> bool {
    if ws.windows.is_empty() {
        return true;
    }
    let local = t + i64::from(ws.zone.offset_at(t));
    let today = local.div_euclid(86_400);
    ws.windows.iter().any(|w| {
        (today - 1..=today).any(|d| {
            let weekday = (d + 3).rem_euclid(7);
            let start = d * 86_400 + i64::from(w.start_min) * 60;
            w.days & (1 << weekday) != 0
                && local >= start
                && local < start + i64::from(w.length_min()) * 60
        })
    })
}

fn arb_window() -> impl Strategy<Value = Window> {
    (1u8..=0x7f, 0u16..1440, 1u16..1440).prop_map(|(days, start_min, len)| Window {
        days,
        start_min,
        end_min: (start_min + len) % 1440,
    })
}

fn arb_zone() -> impl Strategy<Value = Zone> {
    (
        -12i32..=14,
        prop::collection::vec((0i64..400 * 86_400, -1i32..=1), 0..4),
    )
        .prop_map(|(hours, changes)| {
            let mut at = 1_790_000_000;
            let changes = changes
                .into_iter()
                .map(|(gap, d)| {
                    at += gap + 3600;
                    (at, (hours + d) * 3600)
                })
                .collect();
            Zone {
                name: "random".into(),
                offset_s: hours * 3600,
                changes,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    /// Over 100,000 random clocks, window sets and zones (with offset changes): the device
    /// is told "open" exactly when the definition says so, and the next opening is open,
    /// within a week and a day, and not preceded by an open minute.
    #[test]
    fn next_open_is_the_first_open_moment(
        windows in prop::collection::vec(arb_window(), 1..4),
        zone in arb_zone(),
        t in 1_790_000_000i64..1_830_000_000,
    ) {
        let ws = Policy { windows, zone, ..Policy::default() };
        prop_assert_eq!(ws.is_open(t), open_by_definition(&ws, t));
        let n = ws.next_open(t).expect("a window opens");
        prop_assert!(n >= t && n - t <= 8 * 86_400, "{} {}", t, n);
        prop_assert!(open_by_definition(&ws, n));
        if n > t {
            prop_assert!(!open_by_definition(&ws, n - 1));
            prop_assert!(!open_by_definition(&ws, t));
            // A sample of moments in between are all closed.
            for k in 1..8 {
                let s = t + (n - t) * k / 8;
                prop_assert!(!open_by_definition(&ws, s), "{} open before {}", s, n);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Slower and exhaustive: every minute from the clock to the next opening is closed.
    #[test]
    fn no_minute_before_the_next_opening_is_open(
        windows in prop::collection::vec(arb_window(), 1..4),
        zone in arb_zone(),
        t in 1_790_000_000i64..1_830_000_000,
    ) {
        let ws = Policy { windows, zone, ..Policy::default() };
        let n = ws.next_open(t).expect("a window opens");
        let mut s = t;
        while s < n {
            prop_assert!(!open_by_definition(&ws, s), "{} open before {}", s, n);
            s += 60;
        }
    }
}

#[test]
fn consent_holds_an_update_until_it_says_go_or_the_limit_passes() {
    let p = Policy {
        consent: vec!["/usr/bin/app".into(), "may-update".into()],
        consent_retry_s: 300,
        consent_force_after_s: Some(86_400),
        ..Policy::default()
    };
    assert_eq!(p.verdict(&Answer::Go, None, 1000), Verdict::Apply);
    assert_eq!(
        p.verdict(&Answer::NotNow(String::new()), None, 1000),
        Verdict::AskAgainAt(1300)
    );
    assert_eq!(
        p.verdict(&Answer::No("busy".into()), Some(1000), 2000),
        Verdict::Refused("busy".into(), 2300)
    );
    // A day after it first held the update back, the application is not asked any more.
    assert_eq!(
        p.verdict(&Answer::NotNow(String::new()), Some(1000), 1000 + 86_400),
        Verdict::Apply
    );
    assert_eq!(
        p.verdict(&Answer::No("x".into()), Some(1000), 1000 + 86_400),
        Verdict::Apply
    );
    let no_limit = Policy {
        consent_force_after_s: None,
        ..p
    };
    assert_eq!(
        no_limit.verdict(&Answer::NotNow(String::new()), Some(0), i64::MAX / 2),
        Verdict::AskAgainAt(i64::MAX / 2 + 300)
    );
}

/// The device's loop over a staged update, as the agent runs it: look, then sleep until the
/// look says. Returns when it applied (or None within `horizon`) and every moment it looked.
fn run_staged(
    p: &Policy,
    t0: i64,
    horizon: i64,
    consent_goes_at: Option<i64>,
) -> (Option<i64>, Vec<(i64, Look)>) {
    let mut held = Held::default();
    let mut t = t0;
    let mut looks = Vec::new();
    while t <= horizon {
        let look = p.look(&mut held, Clock::at(t), Trigger::Device, || {
            if consent_goes_at.is_some_and(|g| t >= g) {
                Answer::Go
            } else {
                Answer::NotNow("busy".into())
            }
        });
        looks.push((t, look.clone()));
        match look {
            Look::Apply { .. } => return (Some(t), looks),
            Look::Wait { at: None } => return (None, looks),
            Look::Wait { at: Some(at) } | Look::HeldBack { at, .. } => {
                assert!(at > t, "a look at {t} asked to look again at {at}");
                t = at;
            }
        }
    }
    (None, looks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    /// Over 100,000 random (clock, windows, zone, reboot policy, consent answers, consent
    /// limits): a staged update is never applied outside a window, never before the
    /// application says go unless `consent_force_after` passed, never by the device under
    /// `reboot = "manual"`; the application is asked at the opening of every window after its
    /// retry delay, and an update it lets go at once is applied at the first window.
    #[test]
    fn staged_updates_apply_only_in_windows_once_consent_allows(
        windows in prop::collection::vec(arb_window(), 0..4),
        zone in arb_zone(),
        t0 in 1_790_000_000i64..1_830_000_000,
        consent in any::<bool>(),
        goes_after in prop::option::of(0i64..6 * 86_400),
        retry in 60u64..7200,
        force_after in prop::option::of(3600u64..5 * 86_400),
        manual in prop::bool::weighted(0.1),
    ) {
        let p = Policy {
            windows,
            zone,
            consent: if consent { vec!["/usr/bin/app".into()] } else { vec![] },
            consent_retry_s: retry,
            consent_force_after_s: force_after.filter(|_| consent),
            reboot: if manual { Reboot::Manual } else { Reboot::Window },
            ..Policy::default()
        };
        let goes_at = goes_after.map(|g| t0 + g);
        let (applied, looks) = run_staged(&p, t0, t0 + 12 * 86_400, goes_at);
        if manual {
            prop_assert_eq!(applied, None);
            prop_assert_eq!(looks.len(), 1);
            return Ok(());
        }
        let first_open = p.next_open(t0).expect("a window opens");
        if let Some(ta) = applied {
            prop_assert!(open_by_definition(&p, ta), "applied at {} outside a window", ta);
            let forced = looks
                .iter()
                .find(|(_, l)| matches!(l, Look::HeldBack { .. }))
                .zip(p.consent_force_after_s)
                .is_some_and(|((first, _), limit)| ta - first >= limit as i64);
            prop_assert!(
                !consent || goes_at.is_some_and(|g| ta >= g) || forced,
                "applied at {} before consent went at {:?}", ta, goes_at
            );
        }
        if !consent || goes_at.is_some_and(|g| g <= t0) {
            prop_assert_eq!(applied, Some(first_open));
        }
        // Each look follows from the one before: after "not now", the next look is the
        // retry delay later; after a closed window, the opening of the next one.
        for pair in looks.windows(2) {
            let ((t, look), (next, _)) = (&pair[0], &pair[1]);
            let expected = match look {
                Look::HeldBack { .. } => *t + retry as i64,
                Look::Wait { at: Some(at) } => {
                    prop_assert_eq!(Some(*at), p.next_open(*t));
                    *at
                }
                other => panic!("looked again after {other:?}"),
            };
            prop_assert_eq!(*next, expected);
            prop_assert_eq!(
                matches!(look, Look::Wait { .. }),
                !open_by_definition(&p, *t),
                "at {} the look was {:?}", t, look
            );
        }
    }

    /// An operator's apply is applied at once, windows or not, and says when it overrides
    /// one; `--now` skips the application; `--stage` never applies by itself.
    #[test]
    fn operators_apply_at_once_and_overrides_are_told(
        windows in prop::collection::vec(arb_window(), 1..4),
        zone in arb_zone(),
        t in 1_790_000_000i64..1_830_000_000,
        now in any::<bool>(),
    ) {
        let p = Policy {
            windows,
            zone,
            consent: vec!["/usr/bin/app".into()],
            ..Policy::default()
        };
        let mut asked = false;
        let look = p.look(&mut Held::default(), Clock::at(t), Trigger::Operator { now }, || {
            asked = true;
            Answer::Go
        });
        prop_assert_eq!(look, Look::Apply { overrides_window: !open_by_definition(&p, t) });
        prop_assert_eq!(asked, !now);
        let mut staged = Held { stage_only: true, ..Held::default() };
        prop_assert_eq!(
            p.look(&mut staged, Clock::at(t), Trigger::Device, || Answer::Go),
            Look::Wait { at: None }
        );
        // A clock that cannot be trusted is outside every window for the device, not for
        // an operator; unless the spec says to apply anyway.
        let blind = Clock { t, trusted: false };
        prop_assert_eq!(
            p.look(&mut Held::default(), blind, Trigger::Device, || Answer::Go),
            Look::Wait { at: None }
        );
        let operator = p.look(&mut Held::default(), blind, Trigger::Operator { now: true }, || Answer::Go);
        prop_assert!(matches!(operator, Look::Apply { .. }), "{:?}", operator);
        let trusting = Policy { untrusted_clock_applies: true, ..p.clone() };
        prop_assert_eq!(
            matches!(trusting.look(&mut Held::default(), blind, Trigger::Device, || Answer::Go), Look::Apply { .. }),
            open_by_definition(&p, t)
        );
    }
}
