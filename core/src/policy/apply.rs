//! When a verified update switches slots: at once, at the next maintenance window, or when an
//! operator says so. The install itself may always run (download now, install later); this
//! decides only the moment the device renames the staged entry into a bootable one and
//! reboots, which is the moment a fleet's users notice.

use super::Policy;

/// `[update] reboot`: who decides when a staged update is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reboot {
    /// At the first moment a maintenance window is open (at once without windows).
    #[default]
    Window,
    /// As soon as the install is verified. An image cannot have windows too: they would
    /// never apply (the build refuses it).
    Immediate,
    /// Only when an operator asks (`slate apply`, `POST /v1/apply`): the device stages and
    /// waits.
    Manual,
}

impl Reboot {
    /// The word in the spec and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Reboot::Window => "window",
            Reboot::Immediate => "immediate",
            Reboot::Manual => "manual",
        }
    }
}

/// Who asks for an update to be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The device itself: an install just finished (a push or a pull), or a staged update's
    /// time came.
    Device,
    /// An operator (`slate apply`, `slate push --now`): applied now, windows or not; `now`
    /// also skips the application's consent.
    Operator {
        /// Skip the application's consent too.
        now: bool,
    },
    /// An operator asked for the update to be staged only (`slate push --stage`, a
    /// download-only deployment): it waits for an operator's apply whatever the policy says.
    StageOnly,
}

/// What the device does with a verified update at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Apply it now, after the application's consent when `ask_consent`.
    Apply {
        /// Ask `[update] consent` first.
        ask_consent: bool,
        /// Applied outside a maintenance window because an operator said so (logged and
        /// counted).
        overrides_window: bool,
    },
    /// Keep it staged; look again at `at` (Unix seconds; none: only an operator applies it).
    Wait {
        /// When the device looks again by itself.
        at: Option<i64>,
    },
}

/// The device's clock as the policy judges windows by: the time (the floored clock) and
/// whether it can be trusted (a clock stage 2 had to raise to its floor at boot, with no signed
/// time seen since, says only that the time is at least that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Unix seconds.
    pub t: i64,
    /// The time is known, not only a floor.
    pub trusted: bool,
}

impl Clock {
    /// A clock that can be trusted at `t`.
    pub fn at(t: i64) -> Clock {
        Clock { t, trusted: true }
    }
}

impl Policy {
    /// The decision about a verified update at `clock`, asked by `trigger`. With windows and a
    /// clock that cannot be trusted, the device never applies by itself (every moment counts as
    /// outside) unless the spec says `untrusted_clock = "apply"`.
    pub fn apply_decision(&self, clock: Clock, trigger: Trigger) -> Decision {
        let t = clock.t;
        let blind = !clock.trusted && !self.windows.is_empty() && !self.untrusted_clock_applies;
        match trigger {
            Trigger::Operator { now } => Decision::Apply {
                ask_consent: !now,
                overrides_window: !self.is_open(t),
            },
            Trigger::StageOnly => Decision::Wait { at: None },
            Trigger::Device => match self.reboot {
                Reboot::Manual => Decision::Wait { at: None },
                Reboot::Immediate => Decision::Apply {
                    ask_consent: true,
                    overrides_window: false,
                },
                Reboot::Window if blind => Decision::Wait { at: None },
                Reboot::Window if self.is_open(t) => Decision::Apply {
                    ask_consent: true,
                    overrides_window: false,
                },
                Reboot::Window => Decision::Wait {
                    at: self.next_open(t),
                },
            },
        }
    }
}

/// What the device remembers about an update between looks at it: when the application first
/// held it back, when it is to be asked again, and whether an operator staged it only.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    /// When the application first said "not now" or "no" (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_held: Option<i64>,
    /// When the application is asked again (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_again_at: Option<i64>,
    /// Staged by an operator's `--stage`: only an operator applies it.
    #[serde(default)]
    pub stage_only: bool,
}

/// The outcome of one look at an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Look {
    /// Apply it now.
    Apply {
        /// Outside a maintenance window, because an operator said so.
        overrides_window: bool,
    },
    /// Keep it staged; look again at `at` (none: only an operator applies it).
    Wait {
        /// When to look again.
        at: Option<i64>,
    },
    /// The application held it back (its answer); look again at `at`.
    HeldBack {
        /// What the application said.
        answer: super::Answer,
        /// When it is asked again.
        at: i64,
    },
}

impl Policy {
    /// One look at a verified update at `clock`: the windows and the reboot policy first, then
    /// the application (`ask` runs `[update] consent`, only when it must be asked). `held`
    /// carries what earlier looks learnt about this update.
    pub fn look(
        &self,
        held: &mut Held,
        clock: Clock,
        trigger: Trigger,
        ask: impl FnOnce() -> super::Answer,
    ) -> Look {
        let t = clock.t;
        let device = trigger == Trigger::Device;
        if device && held.stage_only {
            return Look::Wait { at: None };
        }
        if let Some(at) = held.ask_again_at.filter(|&at| device && at > t) {
            return Look::Wait { at: Some(at) };
        }
        let (ask_consent, overrides_window) = match self.apply_decision(clock, trigger) {
            Decision::Wait { at } => return Look::Wait { at },
            Decision::Apply {
                ask_consent,
                overrides_window,
            } => (ask_consent, overrides_window),
        };
        if !ask_consent || self.consent.is_empty() {
            return Look::Apply { overrides_window };
        }
        let answer = ask();
        match self.verdict(&answer, held.first_held, t) {
            super::Verdict::Apply => Look::Apply { overrides_window },
            super::Verdict::AskAgainAt(at) | super::Verdict::Refused(_, at) => {
                held.first_held.get_or_insert(t);
                held.ask_again_at = Some(at);
                Look::HeldBack { answer, at }
            }
        }
    }
}
