use super::*;

fn cut(step: &'static str, failing: bool) {
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
    cut("boot-files-writing", false);
}

macro_rules! full {
    ($name:ident, $step:literal, $failing:expr) => {
        #[test]
        #[ignore = "full e2e (cargo xtask e2e --full, cargo xtask gauntlet): CI cuts while the UKI is written"]
        fn $name() {
            cut($step, $failing);
        }
    };
}

full!(cut_after_the_idle_entry_is_removed, "entry-removed", false);
full!(
    cut_while_the_slot_is_half_written,
    "slot-partly-written",
    false
);
full!(cut_after_the_slot_is_written, "slot-written", false);
full!(cut_after_the_uki_entry_is_written, "entry-written", false);
full!(cut_at_the_first_trial_boot, "trial-boot", false);
full!(cut_right_after_blessing, "blessed", false);
full!(cut_right_after_marking_bad, "marked-bad", true);
