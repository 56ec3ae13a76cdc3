use super::*;

fn cut(step: CutPoint, failing: bool) {
    let r = cut_and_recover_family(
        Family::SecureBoot,
        Start::Cold,
        Cut::Step(step),
        failing,
        None,
    );
    if let Err((kind, why)) = r {
        panic!("{kind:?}: {why}");
    }
}

#[test]
fn cut_while_the_uki_is_written() {
    cut(CutPoint::BootFilesWriting, false);
}

macro_rules! full {
    ($name:ident, $step:expr, $failing:expr) => {
        #[test]
        #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts while the UKI is written"]
        fn $name() {
            cut($step, $failing);
        }
    };
}

full!(
    cut_after_the_idle_entry_is_removed,
    CutPoint::EntryRemoved,
    false
);
full!(
    cut_while_the_slot_is_half_written,
    CutPoint::SlotPartlyWritten,
    false
);
full!(cut_after_the_slot_is_written, CutPoint::SlotWritten, false);
full!(
    cut_after_the_uki_entry_is_written,
    CutPoint::EntryWritten,
    false
);
full!(cut_at_the_first_trial_boot, CutPoint::TrialBoot, false);
full!(cut_right_after_blessing, CutPoint::Blessed, false);
full!(cut_right_after_marking_bad, CutPoint::MarkedBad, true);
