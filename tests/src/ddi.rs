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

use crate::channel::{start_nginx, test_ca, Nginx};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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
                    let _ = answer(conn, &s);
                });
            }
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("tmp")).expect("nginx dir");
        let p = |name: &str| prefix.join(name).display().to_string();
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nuser root;\nworker_processes 1;\npid {pid};\nerror_log {err} info;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {acc};\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {crt};\n    ssl_certificate_key {key};\n    ssl_verify_client optional_no_ca;\n    location / {{\n      proxy_pass http://127.0.0.1:{origin_port};\n      proxy_buffering off;\n      proxy_set_header Host $http_host;\n      proxy_set_header X-Client-Cert $ssl_client_escaped_cert;\n    }}\n  }}\n}}\n",
                pid = p("nginx.pid"),
                err = p("error.log"),
                acc = p("access.log"),
                tmp = p("tmp"),
                crt = dir.join("server.crt").display(),
                key = dir.join("server.key").display(),
            ),
        )
        .expect("nginx.conf");
        let nginx = start_nginx(&prefix, &conf, port);
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

/// One request: `GET`/`PUT`/`POST` with `Content-Length`, one per connection (nginx speaks
/// HTTP/1.0 to its upstreams).
struct Request {
    method: String,
    path: String,
    host: String,
    cert: Option<String>,
    range: Option<(u64, Option<u64>)>,
    body: Vec<u8>,
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (mut host, mut cert, mut range, mut length) = (String::new(), None, None, 0usize);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "host" => host = value.to_string(),
            "x-client-cert" if !value.is_empty() => cert = Some(percent_decode(value)),
            "content-length" => length = value.parse().unwrap_or(0),
            "range" => {
                range = value.strip_prefix("bytes=").and_then(|r| {
                    let (a, b) = r.split_once('-')?;
                    Some((a.parse().ok()?, b.parse().ok()))
                })
            }
            _ => {}
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        host,
        cert,
        range,
        body,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The controller id the certificate in `pem` entitles its holder to.
fn controller_of(pem: &str) -> Option<(String, String)> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let fp = slate_core::Fingerprint::of_der(&der);
    Some((
        slate_core::fleet::config::controller_id_for(&fp),
        fp.to_string(),
    ))
}

fn respond(conn: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

fn json_answer(conn: &mut TcpStream, v: &Value) {
    let body = v.to_string();
    respond(
        conn,
        200,
        &[("Content-Type", "application/hal+json".into())],
        body.as_bytes(),
    );
}

fn take_fault(st: &mut State, route: Route, target: &str) -> Option<Fault> {
    let i = st
        .faults
        .iter()
        .position(|(r, t, _)| *r == route && t.as_deref().is_none_or(|t| t == target))?;
    st.faults.remove(i).map(|(_, _, f)| f)
}

/// Answers a fault that replaces the whole answer; false for one that shapes a download.
fn answer_fault(conn: &mut TcpStream, fault: &Fault) -> bool {
    match fault {
        Fault::Status(s) => respond(conn, *s, &[("Retry-After", "5".into())], b""),
        Fault::Garbage => respond(conn, 200, &[], b"{\"config\": [ not json"),
        Fault::Huge(n) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
            );
            let _ = conn.write_all(head.as_bytes());
            let chunk = vec![b' '; 64 * 1024];
            let mut left = *n;
            while left > 0 {
                let k = left.min(chunk.len());
                if conn.write_all(&chunk[..k]).is_err() {
                    break;
                }
                left -= k;
            }
        }
        Fault::Redirect(to) => respond(conn, 302, &[("Location", to.clone())], b""),
        Fault::DropAt(_) => return false,
    }
    true
}

fn answer(mut conn: TcpStream, state: &Mutex<State>) -> Option<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = read_request(&conn)?;
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /{tenant}/controller/v1/{controllerId}/...
    if segs.len() < 4 || segs[0] != TENANT || segs[1] != "controller" || segs[2] != "v1" {
        respond(&mut conn, 404, &[], b"");
        return Some(());
    }
    let cid = segs[3].to_string();
    let rest = &segs[4..];
    let who = req.cert.as_deref().and_then(controller_of);
    let fingerprint = match &who {
        Some((entitled, fp)) if *entitled == cid => fp.clone(),
        _ => {
            lock(state).refused.push(format!("{} {}", req.method, path));
            respond(&mut conn, 403, &[], b"");
            return Some(());
        }
    };
    let base = format!("https://{}/{TENANT}/controller/v1/{cid}", req.host);
    let mut st = lock(state);
    match (req.method.as_str(), rest) {
        ("GET", []) => {
            let t = st.targets.entry(cid.clone()).or_default();
            t.fingerprint = fingerprint;
            t.polls += 1;
            let needs_config = t.attributes.is_empty();
            if let Some(f) = take_fault(&mut st, Route::Base, &cid) {
                drop(st);
                answer_fault(&mut conn, &f);
                return Some(());
            }
            let mut links = serde_json::Map::new();
            let running = st.actions.iter().find(|a| {
                a.target == cid
                    && matches!(a.status, ActionStatus::Running | ActionStatus::Canceling)
            });
            if let Some(a) = running {
                if a.status == ActionStatus::Canceling {
                    links.insert(
                        "cancelAction".into(),
                        json!({"href": format!("{base}/cancelAction/{}", a.id + 10_000)}),
                    );
                } else {
                    links.insert(
                        "deploymentBase".into(),
                        json!({"href": format!("{base}/deploymentBase/{}?c=-{}", a.id, a.id * 7919)}),
                    );
                }
            }
            if needs_config {
                links.insert(
                    "configData".into(),
                    json!({"href": format!("{base}/configData")}),
                );
            }
            let doc = json!({"config": {"polling": {"sleep": st.sleep}}, "_links": links});
            drop(st);
            json_answer(&mut conn, &doc);
        }
        ("PUT", ["configData"]) => {
            let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let Some(data) = v.get("data").and_then(Value::as_object) else {
                drop(st);
                respond(&mut conn, 400, &[], b"");
                return Some(());
            };
            let t = st.targets.entry(cid.clone()).or_default();
            for (k, val) in data {
                t.attributes
                    .insert(k.clone(), val.as_str().unwrap_or_default().to_string());
            }
            drop(st);
            respond(&mut conn, 200, &[], b"");
        }
        ("GET", ["deploymentBase", id]) => {
            let id: u64 = id.parse().ok()?;
            if let Some(f) = take_fault(&mut st, Route::Deployment, &cid) {
                drop(st);
                answer_fault(&mut conn, &f);
                return Some(());
            }
            let Some(a) = st
                .actions
                .iter()
                .find(|a| a.id == id && a.target == cid)
                .cloned()
            else {
                drop(st);
                respond(&mut conn, 404, &[], b"");
                return Some(());
            };
            let sw = st.software[a.software].clone();
            drop(st);
            let filename = format!("bundle-{}.slate", sw.version);
            let mut deployment = json!({
                "download": a.download.word(),
                "update": a.update.word(),
                "chunks": [{
                    "part": "os",
                    "version": sw.version,
                    "name": "slate",
                    "artifacts": [{
                        "filename": filename,
                        "hashes": {"sha1": "0000000000000000000000000000000000000000", "md5": "00000000000000000000000000000000", "sha256": sw.announced_sha256},
                        "size": sw.size,
                        "_links": {
                            "download": {"href": format!("{base}/softwaremodules/{}/artifacts/{filename}", a.software)},
                            "download-http": {"href": format!("http://{}/{TENANT}/controller/v1/{cid}/softwaremodules/{}/artifacts/{filename}", req.host, a.software)}
                        }
                    }]
                }]
            });
            if let Some(open) = a.window {
                deployment["maintenanceWindow"] =
                    json!(if open { "available" } else { "unavailable" });
            }
            json_answer(
                &mut conn,
                &json!({"id": id.to_string(), "deployment": deployment, "actionHistory": {"status": "RUNNING", "messages": []}}),
            );
        }
        ("POST", ["deploymentBase", id, "feedback"]) => {
            let id: u64 = id.parse().ok()?;
            if let Some(f) = take_fault(&mut st, Route::Feedback, &cid) {
                drop(st);
                answer_fault(&mut conn, &f);
                return Some(());
            }
            let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let execution = v["status"]["execution"].as_str().unwrap_or("").to_string();
            let finished = v["status"]["result"]["finished"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let details = v["status"]["details"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            let Some(a) = st
                .actions
                .iter_mut()
                .find(|a| a.id == id && a.target == cid)
            else {
                drop(st);
                respond(&mut conn, 404, &[], b"");
                return Some(());
            };
            if execution.is_empty() || finished.is_empty() {
                drop(st);
                respond(&mut conn, 400, &[], b"");
                return Some(());
            }
            a.feedback.push(Received {
                at: Instant::now(),
                execution: execution.clone(),
                finished: finished.clone(),
                details,
                bytes: req.body.len(),
            });
            if execution == "closed" {
                a.status = if finished == "success" {
                    ActionStatus::Success
                } else {
                    ActionStatus::Failure
                };
            }
            let rollout = a.rollout;
            if let Some((r, _)) = rollout {
                advance(&mut st, r);
            }
            drop(st);
            respond(&mut conn, 200, &[], b"");
        }
        ("GET", ["cancelAction", cancel_id]) => {
            let cancel_id: u64 = cancel_id.parse().ok()?;
            let stop = cancel_id.checked_sub(10_000)?;
            drop(st);
            json_answer(
                &mut conn,
                &json!({"id": cancel_id.to_string(), "cancelAction": {"stopId": stop.to_string()}}),
            );
        }
        ("POST", ["cancelAction", cancel_id, "feedback"]) => {
            let stop = cancel_id.parse::<u64>().ok()?.checked_sub(10_000)?;
            let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let execution = v["status"]["execution"].as_str().unwrap_or("").to_string();
            let finished = v["status"]["result"]["finished"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if let Some(a) = st
                .actions
                .iter_mut()
                .find(|a| a.id == stop && a.target == cid)
            {
                a.feedback.push(Received {
                    at: Instant::now(),
                    execution: format!("cancel-{execution}"),
                    finished: finished.clone(),
                    details: v["status"]["details"].to_string(),
                    bytes: req.body.len(),
                });
                a.status = if execution == "closed" && finished == "success" {
                    ActionStatus::Canceled
                } else {
                    // Rejected: the action goes on.
                    ActionStatus::Running
                };
            }
            drop(st);
            respond(&mut conn, 200, &[], b"");
        }
        ("GET", ["softwaremodules", sm, "artifacts", _name]) => {
            let sm: usize = sm.parse().ok()?;
            let fault = take_fault(&mut st, Route::Artifact, &cid);
            let Some(sw) = st.software.get(sm).cloned() else {
                drop(st);
                respond(&mut conn, 404, &[], b"");
                return Some(());
            };
            drop(st);
            if let Some(f) = &fault {
                if answer_fault(&mut conn, f) {
                    return Some(());
                }
            }
            let bytes = std::fs::read(&sw.path).ok()?;
            let len = bytes.len() as u64;
            let (from, to) = match req.range {
                Some((a, b)) if a < len => (a, b.unwrap_or(len - 1).min(len - 1)),
                Some(_) => {
                    respond(
                        &mut conn,
                        416,
                        &[("Content-Range", format!("bytes */{len}"))],
                        b"",
                    );
                    return Some(());
                }
                None => (0, len - 1),
            };
            let body = &bytes[from as usize..=to as usize];
            let (status, mut headers) = if req.range.is_some() {
                (
                    206,
                    vec![("Content-Range", format!("bytes {from}-{to}/{len}"))],
                )
            } else {
                (200, Vec::new())
            };
            headers.push(("Accept-Ranges", "bytes".into()));
            let send = match fault {
                Some(Fault::DropAt(f)) => ((body.len() as f64) * f) as usize,
                _ => body.len(),
            };
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in &headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            conn.write_all(head.as_bytes()).ok()?;
            let mut sent = 0usize;
            for chunk in body[..send].chunks(64 * 1024) {
                if conn.write_all(chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            *lock(state).served.entry(cid).or_default() += sent as u64;
            if send < body.len() {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
        _ => {
            drop(st);
            respond(&mut conn, 404, &[], b"");
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_certificates_decode() {
        assert_eq!(
            percent_decode("-----BEGIN%20A%0A-----"),
            "-----BEGIN A\n-----"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
