//! goosebit (PyPI, a third-party server of hawkBit's DDI API) for the fleet tests: run from
//! the virtual environment `cargo xtask deps` makes (`.cache/goosebit/venv`) by
//! `tests/goosebit/serve.py`, on loopback with a fresh sqlite database, the bundles seeded
//! into its software table, behind a real nginx that keeps the TLS. The tests drive it
//! through its own REST API (`/login`, `/api/v1/devices`, `/api/v1/software`).

use crate::channel::{test_ca, tls_front, Nginx};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// goosebit's version the tests pin (`cargo xtask deps` installs it).
pub const VERSION: &str = "0.2.12";

/// The python of the virtual environment goosebit is installed in.
pub fn python() -> PathBuf {
    crate::workspace().join(".cache/goosebit/venv/bin/python")
}

/// Where the devices reach goosebit: nginx's port and the CA of its certificate, fixed once
/// per process (image specs name them before goosebit runs).
pub struct Endpoint {
    dir: PathBuf,
    /// nginx's loopback port (the guests reach it at 10.0.2.2).
    pub port: u16,
    /// The CA that signed nginx's certificate.
    pub ca_crt: PathBuf,
}

/// The process's goosebit endpoint.
pub fn endpoint() -> &'static Endpoint {
    static E: OnceLock<Endpoint> = OnceLock::new();
    E.get_or_init(|| {
        let dir = Box::leak(Box::new(
            tempfile::Builder::new()
                .prefix("slate-e2e-goosebit-")
                .tempdir()
                .expect("temp dir"),
        ))
        .path()
        .to_path_buf();
        let ca_crt = test_ca(&dir);
        Endpoint {
            dir,
            port: free_port(),
            ca_crt,
        }
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Endpoint {
    /// The `[fleet]` table of an image that reports to goosebit.
    pub fn spec_table(&self) -> String {
        format!(
            "\n[fleet]\nserver = \"https://10.0.2.2:{}\"\nserver_ca = \"{}\"\npoll_interval = \"5s\"\n",
            self.port,
            self.ca_crt.display()
        )
    }
}

/// A bundle to seed: its file, version and the board it is for.
pub struct Seed<'a> {
    /// The bundle.
    pub path: &'a Path,
    /// Its version.
    pub version: &'a str,
    /// Its board (goosebit's hardware model).
    pub board: &'a str,
}

/// A running goosebit; stopped on drop.
pub struct Goosebit {
    child: Child,
    /// Its plain-HTTP origin on loopback (what the tests' API calls use).
    pub origin: String,
    token: String,
    _nginx: Option<Nginx>,
    /// Its log.
    pub log: PathBuf,
}

impl Drop for Goosebit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Goosebit {
    /// Starts goosebit with `seed` in its software table, in a folder of its own under
    /// `work`; with `tls`, nginx in front of it at [`endpoint`]'s port.
    pub fn start(work: &Path, seed: &[Seed<'_>], tls: bool) -> Goosebit {
        let python = python();
        assert!(
            python.exists(),
            "{} is missing: `cargo xtask deps` installs goosebit {VERSION} there",
            python.display()
        );
        std::fs::create_dir_all(work).expect("goosebit folder");
        let seed_file = work.join("seed.json");
        let entries: Vec<Value> = seed
            .iter()
            .map(|s| json!({"path": s.path, "version": s.version, "board": s.board}))
            .collect();
        std::fs::write(&seed_file, Value::Array(entries).to_string()).expect("seed.json");
        let port = free_port();
        let log = work.join("goosebit.log");
        let child = Command::new(&python)
            .arg(crate::workspace().join("tests/goosebit/serve.py"))
            .arg(work.join("state"))
            .arg(port.to_string())
            .arg(&seed_file)
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            ))
            .spawn()
            .expect("starting goosebit");
        let origin = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let token = loop {
            let login = ureq::post(&format!("{origin}/login"))
                .timeout(Duration::from_secs(5))
                .send_form(&[("username", "admin"), ("password", "slate-e2e")]);
            if let Ok(r) = login {
                let v: Value = serde_json::from_str(&r.into_string().expect("login answer"))
                    .expect("login JSON");
                break v["access_token"].as_str().expect("a token").to_string();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "goosebit did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let nginx = tls.then(|| front(endpoint(), port));
        Goosebit {
            child,
            origin,
            token,
            _nginx: nginx,
            log,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let req = ureq::request(method, &format!("{}{path}", self.origin))
            .timeout(Duration::from_secs(10))
            .set("Authorization", &format!("Bearer {}", self.token));
        let r = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        match r {
            Ok(r) => r
                .into_string()
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null),
            Err(e) => panic!("goosebit {method} {path}: {e}"),
        }
    }

    /// `GET /api/v1/devices`: every device goosebit knows.
    pub fn devices(&self) -> Vec<Value> {
        self.call("GET", "/api/v1/devices", None)["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The device `id` as goosebit's API shows it.
    pub fn device(&self, id: &str) -> Option<Value> {
        self.devices().into_iter().find(|d| d["id"] == id)
    }

    /// `GET /api/v1/software`.
    pub fn software(&self) -> Vec<Value> {
        self.call("GET", "/api/v1/software", None)["software"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The software id goosebit gave the seeded `version`.
    pub fn software_id(&self, version: &str) -> String {
        self.software()
            .iter()
            .find(|s| s["version"] == version)
            .and_then(|s| s["id"].as_i64())
            .map(|i| i.to_string())
            .unwrap_or_else(|| panic!("goosebit has no software {version}: {:?}", self.software()))
    }

    /// `PATCH /api/v1/devices`: assigns `software` (an id) to `device`.
    pub fn assign(&self, device: &str, software: &str) {
        let v = self.call(
            "PATCH",
            "/api/v1/devices",
            Some(json!({"devices": [device], "software": software})),
        );
        assert_eq!(v["success"], true, "{v}");
    }

    /// Waits up to `timeout` for `f` to hold of device `id` as the API shows it.
    pub fn wait_device(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            if let Some(d) = self.device(id).filter(|d| f(d)) {
                return d;
            }
            assert!(
                start.elapsed() < timeout,
                "goosebit did not show {what} for {id} within {timeout:?}: {:?}",
                self.device(id)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// nginx with TLS at `e`'s port in front of goosebit's origin on `origin_port`, saying the
/// scheme was https (uvicorn's proxy headers make goosebit's links https:// ones).
fn front(e: &Endpoint, origin_port: u16) -> Nginx {
    tls_front(
        &e.dir,
        e.port,
        origin_port,
        "",
        "      proxy_http_version 1.1;\n      proxy_set_header X-Forwarded-Proto https;\n      proxy_set_header X-Forwarded-For $remote_addr;\n",
    )
}

#[cfg(test)]
mod tests {
    //! goosebit and Slate's DDI documents, without a device: what the agent parses from a
    //! real third-party server, and what that server makes of what the agent sends.

    use super::*;
    use slate_core::fleet::ddi::{self, ConfigData, Execution, Feedback, Finished, Progress};

    fn get(url: &str) -> (u16, Vec<u8>) {
        match ureq::get(url).timeout(Duration::from_secs(10)).call() {
            Ok(r) => {
                let status = r.status();
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader(), &mut body).expect("body");
                (status, body)
            }
            Err(ureq::Error::Status(s, _)) => (s, Vec::new()),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    fn send(method: &str, url: &str, body: &impl serde::Serialize) -> u16 {
        match ureq::request(method, url)
            .timeout(Duration::from_secs(10))
            .set("Content-Type", "application/json")
            .send_string(&serde_json::to_string(body).expect("json"))
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{method} {url}: {e}"),
        }
    }

    /// `…/deploymentBase/{id}?c=…` → `…/deploymentBase/{id}/feedback`.
    fn feedback_of(deployment: &url::Url) -> String {
        let mut u = deployment.clone();
        u.set_query(None);
        format!("{u}/feedback")
    }

    #[test]
    fn goosebit_speaks_the_ddi_slate_reads_and_takes_the_feedback_slate_sends() {
        let work = tempfile::tempdir().expect("temp dir");
        let bundle = work.path().join("demo-2.0.0.slate");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&bundle, &bytes).expect("bundle");
        let g = Goosebit::start(
            &work.path().join("goosebit"),
            &[Seed {
                path: &bundle,
                version: "2.0.0",
                board: "qemu-x86_64",
            }],
            false,
        );
        let server = url::Url::parse(&g.origin).expect("origin");
        let base = format!("{}/DEFAULT/controller/v1/slate-0011223344556677", g.origin);

        // Registration: goosebit asks for configData, and reads Slate's.
        let (status, body) = get(&base);
        assert_eq!(status, 200);
        let asked = ddi::read_base(&server, &body).expect("goosebit's base resource");
        let config = asked
            .config_data
            .expect("a configData link at registration");
        let data = [
            ("hw_boardname", "qemu-x86_64"),
            ("sw_version", "1.0.0"),
            ("version", "1.0.0"),
            ("product", "slate-demo"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(send("PUT", config.as_str(), &ConfigData::merge(data)), 200);
        let d = g
            .device("slate-0011223344556677")
            .expect("goosebit registered the device");
        assert_eq!(d["sw_version"], "1.0.0", "{d}");
        assert_eq!(d["hardware"]["model"], "qemu-x86_64", "{d}");

        // A deployment: Slate's parser finds the bundle with its size and sha256.
        g.assign("slate-0011223344556677", &g.software_id("2.0.0"));
        let (_, body) = get(&base);
        let (deployment, action) = ddi::read_base(&server, &body)
            .expect("base")
            .deployment
            .expect("a deployment link once assigned");
        let (_, body) = get(deployment.as_str());
        let offer = ddi::read_deployment(&server, &body).expect("goosebit's deployment");
        assert_eq!(offer.action, action);
        assert_eq!(offer.size, bytes.len() as u64);
        assert_eq!(offer.version, "2.0.0");
        use sha2::Digest;
        assert_eq!(offer.sha256, <[u8; 32]>::from(sha2::Sha256::digest(&bytes)));
        // Range requests, which a resumed download makes.
        let r = ureq::get(offer.url.as_str())
            .set("Range", "bytes=1000-1999")
            .call()
            .expect("a range of the artefact");
        assert_eq!(r.status(), 206);

        // Slate's feedback: proceeding, then closed/success → goosebit's device is finished
        // on 2.0.0.
        let feedback = feedback_of(&deployment);
        let proceeding = Feedback::new(
            action,
            Execution::Proceeding,
            Finished::None,
            Some(Progress { cnt: 50, of: 100 }),
            vec!["downloading".into()],
        );
        assert_eq!(send("POST", &feedback, &proceeding), 200);
        assert_eq!(
            g.device("slate-0011223344556677").unwrap()["last_state"],
            "Running"
        );
        let success = Feedback::new(
            action,
            Execution::Closed,
            Finished::Success,
            None,
            vec!["2.0.0 committed on slot b after its health checks".into()],
        );
        assert_eq!(send("POST", &feedback, &success), 200);
        let d = g.device("slate-0011223344556677").unwrap();
        assert_eq!(
            (d["last_state"].as_str(), d["sw_version"].as_str()),
            (Some("Finished"), Some("2.0.0")),
            "{d}"
        );

        // A failure is an error state in goosebit.
        let other = format!("{}/DEFAULT/controller/v1/slate-8899aabbccddeeff", g.origin);
        let (_, body) = get(&other);
        let config = ddi::read_base(&server, &body).unwrap().config_data.unwrap();
        let data = [("hw_boardname", "qemu-x86_64"), ("sw_version", "1.0.0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(send("PUT", config.as_str(), &ConfigData::merge(data)), 200);
        g.assign("slate-8899aabbccddeeff", &g.software_id("2.0.0"));
        let (_, body) = get(&other);
        let (deployment, action) = ddi::read_base(&server, &body).unwrap().deployment.unwrap();
        let failure = Feedback::new(
            action,
            Execution::Closed,
            Finished::Failure,
            None,
            vec!["rolled back to 1.0.0: health check app failed".into()],
        );
        assert_eq!(send("POST", &feedback_of(&deployment), &failure), 200);
        let d = g.device("slate-8899aabbccddeeff").unwrap();
        assert_eq!(d["last_state"], "Error", "{d}");
        assert_eq!(d["sw_version"], "1.0.0", "{d}");
    }
}
