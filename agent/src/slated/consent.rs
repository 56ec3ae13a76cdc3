//! Asking the application before an update is applied (`[update] consent`): its program runs
//! with the version in `SLATE_UPDATE_VERSION` (and the running one in `SLATE_RUNNING_VERSION`);
//! exit 0 lets the update go, 75 (EX_TEMPFAIL) means not now, anything else no. A program that
//! does not answer within a minute is a no.

use slate_core::policy::Answer;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest an answer is waited for.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Runs `argv` and reads its answer (blocking: call it off the async runtime).
pub fn ask(argv: &[String], version: &str, running: &str) -> Answer {
    let Some((prog, args)) = argv.split_first() else {
        return Answer::Go;
    };
    let child = Command::new(prog)
        .args(args)
        .env("SLATE_UPDATE_VERSION", version)
        .env("SLATE_RUNNING_VERSION", running)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Answer::No(format!("{prog} did not start: {e}")),
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() < ANSWER_WITHIN => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Answer::No(format!(
                    "{prog} did not answer within {} s",
                    ANSWER_WITHIN.as_secs()
                ));
            }
            Err(e) => return Answer::No(format!("{prog}: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.by_ref().take(4096).read_to_string(&mut out);
    }
    let said = out.lines().last().unwrap_or("").trim().to_string();
    let why = |what: String| {
        if said.is_empty() {
            what
        } else {
            format!("{what}: {said}")
        }
    };
    match status.code() {
        Some(0) => Answer::Go,
        Some(75) => Answer::NotNow(why("exit 75".into())),
        Some(c) => Answer::No(why(format!("exit {c}"))),
        None => Answer::No(why(format!("{status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn exit_codes_are_the_answer_and_the_last_line_the_reason() {
        assert_eq!(ask(&sh("exit 0"), "2.0.0", "1.0.0"), Answer::Go);
        assert_eq!(
            ask(&sh("echo busy recording; exit 75"), "2.0.0", "1.0.0"),
            Answer::NotNow("exit 75: busy recording".into())
        );
        assert_eq!(
            ask(
                &sh("test \"$SLATE_UPDATE_VERSION\" = 2.0.0 && exit 3; exit 0"),
                "2.0.0",
                "1.0.0"
            ),
            Answer::No("exit 3".into())
        );
        assert!(matches!(
            ask(&["/no/such/program".into()], "2.0.0", "1.0.0"),
            Answer::No(why) if why.contains("did not start")
        ));
        assert_eq!(ask(&[], "2.0.0", "1.0.0"), Answer::Go);
    }
}
