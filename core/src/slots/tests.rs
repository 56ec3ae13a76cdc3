//! The slot rules, tested: boot attempts, giving up a good slot, decisions after health
//! checks and fallbacks, and the security floor.
use super::*;

fn n(s: &str) -> EntryName {
    s.parse().unwrap()
}

#[test]
fn states_follow_counters() {
    let entries = vec![n("slate-a-1.0.0.conf"), n("slate-b-1.1.0+2-1.conf")];
    assert_eq!(view(Slot::A, &entries).state, SlotState::Good);
    let b = view(Slot::B, &entries);
    assert_eq!((b.state, b.tries_left), (SlotState::Trial, Some(2)));
    assert_eq!(
        view(Slot::B, &[n("slate-b-1.1.0+0-3.conf")]).state,
        SlotState::Bad
    );
    assert_eq!(view(Slot::B, &[]).state, SlotState::Empty);
}

#[test]
fn attempts_count_starts_of_the_same_slot() {
    let a1 = Attempts::next(None, Slot::A);
    assert_eq!(a1.starts, 1);
    let a2 = Attempts::next(Attempts::parse(&a1.render()), Slot::A);
    assert_eq!(
        a2,
        Attempts {
            slot: Slot::A,
            starts: 2
        }
    );
    assert_eq!(Attempts::next(Some(a2), Slot::B).starts, 1);
    assert_eq!(Attempts::parse("garbage"), None);
    let three = Attempts {
        slot: Slot::A,
        starts: 3,
    };
    assert_eq!(
        Attempts::forgive(Some(three), Slot::A).map(|a| a.starts),
        Some(2)
    );
    assert_eq!(Attempts::forgive(Some(three), Slot::B), None);
    assert_eq!(Attempts::forgive(Attempts::parse("a 1\n"), Slot::A), None);
    assert_eq!(Attempts::forgive(None, Slot::A), None);
    assert_eq!(Attempts::parse("a"), None);
    assert_eq!(Attempts::parse(""), None);
}

#[test]
fn a_good_slot_is_given_up_only_after_the_limit_and_with_a_fallback() {
    let both = vec![n("slate-a-1.0.0.conf"), n("slate-b-1.1.0.conf")];
    let at = |starts| Attempts {
        slot: Slot::B,
        starts,
    };
    assert_eq!(give_up(at(MAX_FAILED_BOOTS), &both), None);
    let (from, to) = give_up(at(MAX_FAILED_BOOTS + 1), &both).unwrap();
    assert_eq!(from.to_string(), "slate-b-1.1.0.conf");
    assert_eq!(to.to_string(), "slate-b-1.1.0+0.conf");
    assert_eq!(view(Slot::B, &[to]).state, SlotState::Bad);
    // No fallback: keep trying the only slot that can boot.
    let alone = vec![n("slate-a-1.0.0+0-3.conf"), n("slate-b-1.1.0.conf")];
    assert_eq!(give_up(at(10), &alone), None);
    assert_eq!(give_up(at(10), &[n("slate-b-1.1.0.conf")]), None);
    // A trial slot is left to systemd-boot's counter.
    let trial = vec![n("slate-a-1.0.0.conf"), n("slate-b-1.1.0+1-2.conf")];
    assert_eq!(give_up(at(10), &trial), None);
    // The other slot on trial is a fallback.
    let other_trial = vec![n("slate-a-1.2.0+3.conf"), n("slate-b-1.1.0.conf")];
    assert!(give_up(at(4), &other_trial).is_some());
}

#[test]
fn bless_and_mark_bad_rename_as_the_spec_says() {
    let e = n("slate-b-1.1.0+2-1.conf");
    assert_eq!(blessed(&e).to_string(), "slate-b-1.1.0.conf");
    assert_eq!(marked_bad(&e).to_string(), "slate-b-1.1.0+0-1.conf");
    assert_eq!(
        marked_bad(&n("slate-b-1.1.0+3.conf")).to_string(),
        "slate-b-1.1.0+0-1.conf"
    );
}

mod decisions {
    use super::*;
    use crate::api::CheckResult;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = EntryName> {
        (
            prop_oneof![Just(Slot::A), Just(Slot::B)],
            0u64..4,
            prop_oneof![
                Just(None),
                (0u32..4, 0u32..4).prop_map(|(left, done)| Some(Counter { left, done }))
            ],
        )
            .prop_map(|(slot, minor, counter)| EntryName {
                slot,
                version: format!("1.{minor}.0").parse().unwrap(),
                counter,
                kind: crate::bootentry::EntryKind::Conf,
            })
    }

    fn health(passed: bool) -> Health {
        Health {
            state: if passed {
                HealthState::Passed
            } else {
                HealthState::Failed
            },
            checks: vec![CheckResult {
                name: "web".into(),
                ok: passed,
                detail: "x".into(),
                attempts: 1,
            }],
        }
    }

    fn good_exists(entries: &[EntryName]) -> bool {
        [Slot::A, Slot::B]
            .iter()
            .any(|&s| view(s, entries).state == SlotState::Good)
    }

    proptest! {
        #[test]
        fn plans_keep_a_good_entry_and_bless_only_what_passed(
            entries in proptest::collection::vec(entry(), 0..5),
            running_b in any::<bool>(),
            trial in any::<bool>(),
            passed in any::<bool>(),
            minor in 0u64..4,
        ) {
            let running = if running_b { Slot::B } else { Slot::A };
            let version: Version = format!("1.{minor}.0").parse().unwrap();
            let b = Boot {
                running,
                version: &version,
                boot: if trial { BootState::Trial { left: 2, done: 1 } } else { BootState::Good },
                entries: &entries,
                last_attempt: None,
                security_epoch: 0,
                other_epoch: None,
                now: 1,
            };
            let plan = after_health(&b, &health(passed));
            let after = plan.apply_renames(&entries);
            if good_exists(&entries) {
                prop_assert!(good_exists(&after), "{entries:?} -> {after:?}");
            }
            for step in &plan.steps {
                if let Step::Rename { from, to, .. } = step {
                    // Only the running slot's own trial entry is ever renamed.
                    prop_assert_eq!(from.slot, running);
                    prop_assert_eq!(to.slot, running);
                    prop_assert!(from.counter.is_some());
                    // A failed boot is never blessed.
                    if !passed {
                        prop_assert!(to.counter.is_some_and(|c| c.left == 0));
                    }
                }
            }
            if !trial {
                prop_assert!(plan.steps.is_empty());
            }
            prop_assert_eq!(plan.reboots(), trial && !passed && plan.steps.len() > 1);
            prop_assert_eq!(plan.commits(), trial && passed && plan.steps.len() > 1);
        }

        #[test]
        fn a_noticed_fallback_renames_nothing(
            entries in proptest::collection::vec(entry(), 0..5),
            other_b in any::<bool>(),
        ) {
            let theirs = if other_b { Slot::B } else { Slot::A };
            let version: Version = "1.0.0".parse().unwrap();
            let attempt = UpdateRecord {
                version: Some("1.1.0".parse().unwrap()),
                slot: theirs,
                outcome: Outcome::Installed,
                reason: String::new(),
                security_epoch: 0,
                at: 0,
            };
            let b = Boot {
                running: theirs.other(),
                version: &version,
                boot: BootState::Good,
                entries: &entries,
                last_attempt: Some(&attempt),
                security_epoch: 0,
                other_epoch: None,
                now: 1,
            };
            let plan = notice_fallback(&b);
            prop_assert_eq!(plan.apply_renames(&entries), entries.clone());
            let fell_back = !bootable(view(theirs, &entries).state);
            prop_assert_eq!(!plan.steps.is_empty(), fell_back);
            // A version that never reached its checks is retried after a back-off.
            let no_verdict = plan.steps.iter().all(|s| !matches!(s, Step::Fail { cause, .. } if *cause != crate::retry::Cause::NoVerdict));
            prop_assert!(no_verdict);
        }
    }

    #[test]
    fn a_slot_below_the_floor_is_refused_only_with_a_fallback() {
        let both: Vec<EntryName> = vec![
            "slate-a-1.0.0.conf".parse().unwrap(),
            "slate-b-1.1.0.conf".parse().unwrap(),
        ];
        assert!(epoch_allows(2, 2) && !epoch_allows(1, 2));
        let (from, to) = refuse_below_floor(Slot::A, &both).unwrap();
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("slate-a-1.0.0.conf".into(), "slate-a-1.0.0+0.conf".into())
        );
        assert_eq!(refuse_below_floor(Slot::A, &both[..1]), None);
    }

    #[test]
    fn commit_raises_the_floor_to_the_image_epoch_and_marks_a_lower_other_slot_bad() {
        let entries = vec![
            "slate-a-1.0.0.conf".parse().unwrap(),
            "slate-b-1.1.0+2-1.conf".parse().unwrap(),
        ];
        let version: Version = "1.1.0".parse().unwrap();
        let attempt = UpdateRecord {
            version: Some("1.1.0".parse().unwrap()),
            slot: Slot::B,
            outcome: Outcome::Installed,
            reason: String::new(),
            security_epoch: 7,
            at: 0,
        };
        let b = Boot {
            running: Slot::B,
            version: &version,
            boot: BootState::Trial { left: 2, done: 1 },
            entries: &entries,
            last_attempt: Some(&attempt),
            security_epoch: 7,
            other_epoch: Some(6),
            now: 5,
        };
        let plan = after_health(&b, &health(true));
        assert!(plan.steps.contains(&Step::RaiseEpoch(7)));
        let after = plan.apply_renames(&entries);
        assert_eq!(after[1].to_string(), "slate-b-1.1.0.conf");
        assert_eq!(after[0].to_string(), "slate-a-1.0.0+0.conf");
        let same = Boot {
            other_epoch: Some(7),
            ..b
        };
        assert_eq!(
            after_health(&same, &health(true)).apply_renames(&entries)[0].to_string(),
            "slate-a-1.0.0.conf"
        );
        let failed = after_health(&b, &health(false));
        assert_eq!(
            failed.apply_renames(&entries)[1].to_string(),
            "slate-b-1.1.0+0-1.conf"
        );
        assert!(failed.reboots());
        assert!(failed.steps.contains(&Step::Fail {
            version: "1.1.0".into(),
            reason: "health check failed: web: x".into(),
            cause: crate::retry::Cause::Verdict,
            at: 5,
        }));
    }
}
