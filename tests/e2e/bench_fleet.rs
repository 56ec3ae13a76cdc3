//! `cargo xtask bench fleet`: figures, not a test (ignored unless asked for by name). One
//! device booted from the 1.0.0 fleet image, reporting to the in-repo DDI server:
//!
//! 1. `slate push` of 2.0.0: from the push to the device's commit;
//! 2. a deployment of 3.0.0 (the same image, another version) from the server: from its
//!    creation to the device's commit, and to the server's `closed`/`success`;
//! 3. an idle minute: requests the device makes, and the feedback bytes of one update.

use slate_core::api::Kind;
use slate_core::layout::Slot;
use slate_imager::progress::Progress;
use slate_tests::ddi::{ddi, ActionStatus, Handling};
use slate_tests::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(600);

#[test]
#[ignore = "benchmark: cargo xtask bench fleet"]
fn deployment_to_commit_beside_push() {
    let server = ddi();
    let v1 = image_variant("1.0.0", Variant::Fleet);
    let v2 = bundle(image_variant("2.0.0", Variant::Fleet));
    let v3 = bundle(image_variant("3.0.0", Variant::Fleet));
    let (vm, work) = crate::bench_channel::twin(v1);
    let line = vm
        .wait_for(&Kind::FleetPolling.prefix(), BOOT_TIMEOUT)
        .unwrap();
    let cid = line
        .text
        .split("controller=")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let seen_at = |l: &slate_qemu::Line| Instant::now() - vm.elapsed() + l.at;

    // 1. slate push.
    let url = vm.agent_url().unwrap();
    let acc = access(work.path());
    let mark = vm.mark();
    let t = Instant::now();
    slate_imager::operator::push::push(&url, &v2, &acc, true, Some(WAIT), Progress::new(true))
        .unwrap();
    let committed = vm
        .wait_for_after(&Kind::Committed.on_version(Slot::B, "2.0.0"), mark, WAIT)
        .unwrap();
    let push_to_commit = seen_at(&committed).duration_since(t).as_secs_f64();

    // 2. The fleet server's deployment of 3.0.0.
    let sw3 = server.add_software(&v3, "3.0.0", false);
    let mark = vm.mark();
    let t = Instant::now();
    let id = server.assign(&cid, sw3, Handling::Forced, Handling::Forced, None);
    let committed = vm
        .wait_for_after(&Kind::Committed.on_version(Slot::A, "3.0.0"), mark, WAIT)
        .unwrap();
    let deploy_to_commit = seen_at(&committed).duration_since(t).as_secs_f64();
    server
        .wait_until("closed/success", WAIT, |s| {
            s.action(id)
                .is_some_and(|a| a.status == ActionStatus::Success)
        })
        .unwrap();
    let action = server.action(id).unwrap();
    let closed_at = action.feedback.last().unwrap().at;
    let deploy_to_closed = closed_at.duration_since(t).as_secs_f64();
    let feedback_bytes: usize = action.feedback.iter().map(|f| f.bytes).sum();

    // 3. An idle minute.
    let polls = server.target(&cid).unwrap().polls;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let idle_polls = server.target(&cid).unwrap().polls - polls;
    let per_hour = idle_polls as f64 * 3600.0 / t.elapsed().as_secs_f64();
    println!(
        "fleet benchmark ({:?}, the server's sleep 00:00:05)",
        vm.accel()
    );
    println!("  {:<58} {:>8}", "", "seconds");
    println!(
        "  {:<58} {:>8.1}",
        "slate push → committed (2.0.0)", push_to_commit
    );
    println!(
        "  {:<58} {:>8.1}",
        "deployment created → committed (3.0.0)", deploy_to_commit
    );
    println!(
        "  {:<58} {:>8.1}",
        "deployment created → closed/success at the server", deploy_to_closed
    );
    println!(
        "  feedback of that update: {} messages, {feedback_bytes} bytes of JSON bodies",
        action.feedback.len()
    );
    println!(
        "  idle: {idle_polls} polls in {:.0} s = {per_hour:.0} requests/hour at a 5 s sleep (one GET each; at hawkBit's default 5 min sleep: {:.0}/hour)",
        t.elapsed().as_secs_f64(),
        per_hour * 5.0 / 300.0
    );
}
