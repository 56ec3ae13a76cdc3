//! An in-repo fleet server that speaks hawkBit's Direct Device Integration API (v1), written
//! from hawkBit's published DDI documentation (not from any server's code), for what the
//! scenarios need and goosebit lacks: cancel, the server's maintenance window and
//! download-only deployments, 409/429 answers, garbage, huge and redirecting answers, an
//! artefact whose bytes are not what was announced, and rollouts in groups that stop at their
//! error threshold.
//!
//! It is a plain-HTTP origin on loopback behind a real nginx that keeps the TLS, asks every
//! client for its certificate (`ssl_verify_client optional_no_ca`) and passes it on in a
//! header, as hawkBit deployments behind a reverse proxy do: a device is known by its
//! identity, and its controller id must be the one derived from that certificate
//! ([`slate_core::fleet::config::controller_id_for`]).

use crate::channel::{test_ca, tls_front, Nginx};
use sha2::Digest;
use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The tenant the server serves.
pub const TENANT: &str = "DEFAULT";

/// How a step of a deployment is to be handled (DDI's `download` and `update`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Not now.
    Skip,
    /// When the device's policy allows.
    Attempt,
    /// Now.
    Forced,
}

impl Handling {
    fn word(self) -> &'static str {
        match self {
            Handling::Skip => "skip",
            Handling::Attempt => "attempt",
            Handling::Forced => "forced",
        }
    }
}

/// Where an action stands on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionStatus {
    /// Assigned and not finished.
    Running,
    /// A cancel was asked and not yet confirmed.
    Canceling,
    /// The device confirmed the cancel.
    Canceled,
    /// The device reported `closed`/`success`.
    Success,
    /// The device reported `closed`/`failure`.
    Failure,
}

/// An answer the next matching request gets instead of the real one.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// This status, no body.
    Status(u16),
    /// `200` with a body that is not JSON.
    Garbage,
    /// `200` with a body of this many bytes (announced).
    Huge(usize),
    /// `302` to this URL.
    Redirect(String),
    /// The artefact's answer closed after this fraction of what was asked for.
    DropAt(f64),
}

/// Which requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The base resource.
    Base,
    /// A deployment.
    Deployment,
    /// An artefact download.
    Artifact,
    /// A deployment's feedback (the server is down when the device reports).
    Feedback,
}

/// A device as the server knows it.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// The sha256 fingerprint of the certificate it showed (`sha256:…`).
    pub fingerprint: String,
    /// What it sent in `configData`.
    pub attributes: BTreeMap<String, String>,
    /// Polls of its base resource.
    pub polls: u64,
}

/// A bundle the server can deploy.
#[derive(Clone, Debug)]
pub struct Software {
    /// Its version.
    pub version: String,
    /// Its file.
    pub path: PathBuf,
    /// Its length.
    pub size: u64,
    /// The sha256 the server announces (the file's, unless told to lie).
    pub announced_sha256: String,
}

/// One feedback as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// `status.execution`.
    pub execution: String,
    /// `status.result.finished`.
    pub finished: String,
    /// `status.details`, joined.
    pub details: String,
    /// The body's length in bytes.
    pub bytes: usize,
}

/// An action: a bundle assigned to a device.
#[derive(Clone, Debug)]
pub struct Action {
    /// Its id.
    pub id: u64,
    /// The device.
    pub target: String,
    /// The bundle (index into the server's software).
    pub software: usize,
    /// `download` handling.
    pub download: Handling,
    /// `update` handling.
    pub update: Handling,
    /// The server's maintenance window: open, closed, none.
    pub window: Option<bool>,
    /// Where it stands.
    pub status: ActionStatus,
    /// Its feedback, in order.
    pub feedback: Vec<Received>,
    /// The rollout and group it belongs to.
    pub rollout: Option<(usize, usize)>,
}

/// A rollout: groups of devices, each started when the one before succeeded, stopped when a
/// group's failures pass the threshold.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// The bundle.
    pub software: usize,
    /// Devices by group.
    pub groups: Vec<Vec<String>>,
    /// Percent of a group's devices that may fail before the rollout stops.
    pub error_threshold: u32,
    /// The group running now.
    pub current: usize,
    /// Stopped by its error threshold.
    pub stopped: bool,
}

#[derive(Default)]
struct State {
    sleep: String,
    targets: BTreeMap<String, Target>,
    software: Vec<Software>,
    actions: Vec<Action>,
    rollouts: Vec<Rollout>,
    faults: VecDeque<(Route, Option<String>, Fault)>,
    /// Requests that were refused for their identity.
    refused: Vec<String>,
    /// Artefact bytes served, by device.
    served: BTreeMap<String, u64>,
}

/// The server: nginx (TLS, client certificates) in front of the DDI origin.
pub struct DdiServer {
    /// nginx's loopback port (the guests reach it at 10.0.2.2).
    pub port: u16,
    /// The CA that signed nginx's certificate (bake into images as `[fleet] server_ca`).
    pub ca_crt: PathBuf,
    state: Arc<Mutex<State>>,
    _nginx: Nginx,
}

/// The process's DDI server, started once.
pub fn ddi() -> &'static DdiServer {
    static SERVER: OnceLock<DdiServer> = OnceLock::new();
    SERVER.get_or_init(DdiServer::start)
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl DdiServer {
    fn start() -> DdiServer {
        let dir = Box::leak(Box::new(
            tempfile::Builder::new()
                .prefix("slate-e2e-ddi-")
                .tempdir()
                .expect("temp dir"),
        ))
        .path()
        .to_path_buf();
        let ca_crt = test_ca(&dir);
        let state = Arc::new(Mutex::new(State {
            sleep: "00:00:05".into(),
            ..State::default()
        }));
        let origin = TcpListener::bind("127.0.0.1:0").expect("binding the DDI origin");
        let origin_port = origin.local_addr().expect("its address").port();
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in origin.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = origin::answer(conn, &s);
                });
            }
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // The client certificate is asked for, not checked against a CA: the origin knows
        // each device by the certificate nginx passes on.
        let nginx = tls_front(
            &dir,
            port,
            origin_port,
            "    ssl_verify_client optional_no_ca;\n",
            "      proxy_set_header X-Client-Cert $ssl_client_escaped_cert;\n",
        );
        DdiServer {
            port,
            ca_crt,
            state,
            _nginx: nginx,
        }
    }

    /// The `[fleet]` table of an image that reports to this server (the guest's view of it).
    pub fn spec_table(&self) -> String {
        format!(
            "\n[fleet]\nserver = \"https://10.0.2.2:{}\"\nserver_ca = \"{}\"\npoll_interval = \"5s\"\nattributes = {{ site = \"e2e\" }}\n",
            self.port,
            self.ca_crt.display()
        )
    }

    /// Adds `bundle` as a deployable module; `lie` announces a sha256 its bytes do not have.
    pub fn add_software(&self, bundle: &Path, version: &str, lie: bool) -> usize {
        let bytes = std::fs::read(bundle).expect("reading the bundle");
        let mut sha = hex::encode(sha2::Sha256::digest(&bytes));
        if lie {
            sha = format!(
                "{}{}",
                if sha.starts_with('0') { "1" } else { "0" },
                &sha[1..]
            );
        }
        let mut st = lock(&self.state);
        st.software.push(Software {
            version: version.into(),
            path: bundle.to_path_buf(),
            size: bytes.len() as u64,
            announced_sha256: sha,
        });
        st.software.len() - 1
    }

    /// Assigns `software` to `target`; returns the action id.
    pub fn assign(
        &self,
        target: &str,
        software: usize,
        download: Handling,
        update: Handling,
        window: Option<bool>,
    ) -> u64 {
        let mut st = lock(&self.state);
        assign_locked(&mut st, target, software, download, update, window, None)
    }

    /// Starts a rollout of `software` over `groups` that stops when more than
    /// `error_threshold` percent of a group fails; returns its index.
    pub fn rollout(
        &self,
        software: usize,
        groups: Vec<Vec<String>>,
        error_threshold: u32,
    ) -> usize {
        let mut st = lock(&self.state);
        st.rollouts.push(Rollout {
            software,
            groups,
            error_threshold,
            current: 0,
            stopped: false,
        });
        let r = st.rollouts.len() - 1;
        start_group(&mut st, r);
        r
    }

    /// Asks the device to cancel action `id`.
    pub fn cancel(&self, id: u64) {
        let mut st = lock(&self.state);
        if let Some(a) = st.actions.iter_mut().find(|a| a.id == id) {
            a.status = ActionStatus::Canceling;
        }
    }

    /// The server's window for action `id` opens (`true`) or closes.
    pub fn set_window(&self, id: u64, open: bool) {
        let mut st = lock(&self.state);
        if let Some(a) = st.actions.iter_mut().find(|a| a.id == id) {
            a.window = Some(open);
            if open && a.update == Handling::Skip {
                a.update = Handling::Attempt;
            }
        }
    }

    /// The next request on `route` (by `target`, or anyone's) gets `fault`.
    pub fn fault(&self, route: Route, target: Option<&str>, fault: Fault) {
        lock(&self.state)
            .faults
            .push_back((route, target.map(str::to_string), fault));
    }

    /// Faults not yet used.
    pub fn faults_left(&self) -> usize {
        lock(&self.state).faults.len()
    }

    /// A copy of action `id`.
    pub fn action(&self, id: u64) -> Option<Action> {
        lock(&self.state)
            .actions
            .iter()
            .find(|a| a.id == id)
            .cloned()
    }

    /// Every action of `target`.
    pub fn actions_of(&self, target: &str) -> Vec<Action> {
        lock(&self.state)
            .actions
            .iter()
            .filter(|a| a.target == target)
            .cloned()
            .collect()
    }

    /// A copy of the device `target`, once it polled.
    pub fn target(&self, target: &str) -> Option<Target> {
        lock(&self.state).targets.get(target).cloned()
    }

    /// A copy of rollout `r`.
    pub fn rollout_state(&self, r: usize) -> Rollout {
        lock(&self.state).rollouts[r].clone()
    }

    /// Requests refused for the certificate they showed (or did not).
    pub fn refused(&self) -> Vec<String> {
        lock(&self.state).refused.clone()
    }

    /// Artefact bytes the server sent to `target`.
    pub fn served_to(&self, target: &str) -> u64 {
        lock(&self.state).served.get(target).copied().unwrap_or(0)
    }

    /// Waits up to `timeout` for `f` to hold of the server's state.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&DdiServer) -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "the DDI server did not see {what} within {timeout:?}"
        ))
    }
}

fn assign_locked(
    st: &mut State,
    target: &str,
    software: usize,
    download: Handling,
    update: Handling,
    window: Option<bool>,
    rollout: Option<(usize, usize)>,
) -> u64 {
    let id = st.actions.len() as u64 + 1;
    st.actions.push(Action {
        id,
        target: target.to_string(),
        software,
        download,
        update,
        window,
        status: ActionStatus::Running,
        feedback: Vec::new(),
        rollout,
    });
    id
}

fn start_group(st: &mut State, r: usize) {
    let (software, group, targets) = {
        let ro = &st.rollouts[r];
        (ro.software, ro.current, ro.groups[ro.current].clone())
    };
    for t in targets {
        assign_locked(
            st,
            &t,
            software,
            Handling::Forced,
            Handling::Forced,
            None,
            Some((r, group)),
        );
    }
}

/// After an action of rollout `r` finished: stop at the threshold, or start the next group
/// once this one is done.
fn advance(st: &mut State, r: usize) {
    let ro = st.rollouts[r].clone();
    if ro.stopped {
        return;
    }
    let group: Vec<&Action> = st
        .actions
        .iter()
        .filter(|a| a.rollout == Some((r, ro.current)))
        .collect();
    let total = group.len().max(1) as u32;
    let failed = group
        .iter()
        .filter(|a| a.status == ActionStatus::Failure)
        .count() as u32;
    if failed * 100 > ro.error_threshold * total {
        st.rollouts[r].stopped = true;
        return;
    }
    let done = group
        .iter()
        .all(|a| matches!(a.status, ActionStatus::Success | ActionStatus::Failure));
    if done && ro.current + 1 < ro.groups.len() {
        st.rollouts[r].current += 1;
        start_group(st, r);
    }
}

mod origin;
