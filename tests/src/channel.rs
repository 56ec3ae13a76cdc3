//! The update channel as tests serve it: a TUF repository made with `slate repo init`, a test
//! CA whose server certificate names QEMU's host address (10.0.2.2), and a real nginx (Debian's
//! package) serving the repository over HTTPS on loopback, which the guest reaches through
//! QEMU's user network.

use crate::faultproxy::FaultProxy;
use faults::FaultServer;
use slate_imager::operator::repo::{self, InitOptions, PublishOptions, Settings};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod faults;

/// One request in nginx's access log (see [`Channel::requests`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// A bundle download (`….slate?…`).
    pub bundle: bool,
    /// Body bytes sent.
    pub bytes: u64,
}

/// A channel: keys, repository, CA and the port nginx listens on.
pub struct Channel {
    dir: PathBuf,
    /// The repository folder nginx serves.
    pub repo: PathBuf,
    /// The repository's root.json (baked into channel images).
    pub root_json: PathBuf,
    /// The test CA's certificate (baked into channel images).
    pub ca_crt: PathBuf,
    /// The loopback port nginx listens on.
    pub port: u16,
}

/// The process's channel, made once.
pub fn channel() -> &'static Channel {
    static CHANNEL: OnceLock<Channel> = OnceLock::new();
    CHANNEL.get_or_init(Channel::make)
}

/// A second channel with a repository and port of its own, for the update-policy scenario:
/// it publishes other releases than [`channel`]'s, and the two scenarios may run at once.
pub fn policy_channel() -> &'static Channel {
    static CHANNEL: OnceLock<Channel> = OnceLock::new();
    CHANNEL.get_or_init(Channel::make)
}

/// A third channel for the delta scenario: it publishes with chunk indexes (the others
/// publish without, so their downloads stay whole and their byte counts mean what they say).
pub fn delta_channel() -> &'static Channel {
    static CHANNEL: OnceLock<Channel> = OnceLock::new();
    CHANNEL.get_or_init(Channel::make)
}

/// A fourth channel, publishing with chunk indexes, for the Secure Boot delta scenario (its
/// releases are format-2 bundles; it may run beside the delta scenario).
pub fn secure_boot_delta_channel() -> &'static Channel {
    static CHANNEL: OnceLock<Channel> = OnceLock::new();
    CHANNEL.get_or_init(Channel::make)
}

/// A fifth channel, publishing with chunk indexes, for the arm64 delta scenario.
pub fn arm64_delta_channel() -> &'static Channel {
    static CHANNEL: OnceLock<Channel> = OnceLock::new();
    CHANNEL.get_or_init(Channel::make)
}

impl Channel {
    /// Keys, a repository (`slate repo init`), a test CA and a free port.
    fn make() -> Channel {
        let dir = Box::leak(Box::new(
            tempfile::Builder::new()
                .prefix("slate-e2e-channel-")
                .tempdir()
                .expect("temp dir"),
        ))
        .path()
        .to_path_buf();
        for k in ["root", "targets", "online"] {
            slate_imager::operator::keys::keygen(&dir.join(k)).expect("keygen");
        }
        let repo_dir = dir.join("repo");
        let root_json = repo::init(&InitOptions {
            out: repo_dir.clone(),
            root_keys: vec![dir.join("root.pem")],
            threshold: 1,
            targets_keys: vec![dir.join("targets.pem")],
            targets_threshold: 1,
            online_key: dir.join("online.pem"),
            settings: Settings::default(),
            now: slate_imager::operator::bundle::now(),
        })
        .expect("slate repo init");
        let ca_crt = test_ca(&dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Channel {
            dir,
            repo: repo_dir,
            root_json,
            ca_crt,
            port,
        }
    }
}

/// A CA and a server certificate for 10.0.2.2 (the guest's view of the host) and 127.0.0.1
/// (`server.crt`, `server.key` and `ca.crt` in `dir`).
pub(crate) fn test_ca(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "slate e2e channel CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["10.0.2.2".to_string(), "127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server certificate");
    std::fs::write(dir.join("server.crt"), server.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write");
    ca_path
}

impl Channel {
    /// The `[update]` table of a channel image (polls every 10 s in tests).
    pub fn spec_table(&self) -> String {
        format!(
            "\n[update]\nchannel = \"https://10.0.2.2:{}\"\nchannel_root = \"{}\"\nchannel_ca = \"{}\"\npoll_interval = \"10s\"\nbackoff_base = \"2s\"\nbackoff_max = \"10s\"\n",
            self.port,
            self.root_json.display(),
            self.ca_crt.display()
        )
    }

    /// `slate publish` with the channel's keys, without chunk indexes (devices fetch whole
    /// bundles); see [`Channel::publish_with_index`].
    pub fn publish(&self, bundle: Option<&Path>, waves: Option<&str>, max: Option<Option<&str>>) {
        self.publish_as(bundle, waves, max, true, &[])
    }

    /// `slate publish` of a bundle with its chunk index: devices may fetch it by delta.
    pub fn publish_with_index(&self, bundle: &Path) {
        self.publish_as(Some(bundle), None, None, false, &[])
    }

    /// `slate publish --from PREV` of a bundle with its chunk index and a static patch for
    /// devices running `previous`.
    pub fn publish_with_patch(&self, bundle: &Path, previous: &Path) {
        self.publish_as(Some(bundle), None, None, false, &[previous])
    }

    /// The bytes nginx sent the device with `seed` in `log` for static patches
    /// (`….patch-<root hash>`), and how many requests.
    pub fn patch_bytes_sent(log: &str, seed: u32) -> Result<(usize, u64), String> {
        let query = format!("?seed={seed}&");
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&query) && l.contains(".patch-"))
            .collect();
        let mut sum = 0;
        for l in &lines {
            sum += l
                .split("HTTP/1.1\" ")
                .nth(1)
                .and_then(|a| a.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| format!("no body size in the access log line {l:?}"))?;
        }
        Ok((lines.len(), sum))
    }

    fn publish_as(
        &self,
        bundle: Option<&Path>,
        waves: Option<&str>,
        max: Option<Option<&str>>,
        no_chunk_index: bool,
        from: &[&Path],
    ) {
        let waves_file = waves.map(|w| {
            let p = self.dir.join("waves.toml");
            std::fs::write(&p, w).expect("write waves");
            p
        });
        let product_board = bundle
            .is_none()
            .then(|| ("slate-demo".to_string(), "qemu-x86_64".to_string()));
        repo::publish(&PublishOptions {
            repo: self.repo.clone(),
            bundle: bundle.map(Path::to_path_buf),
            waves: waves_file,
            product_board,
            max_version: max.map(|m| m.map(|v| v.parse().expect("version"))),
            targets_keys: vec![self.dir.join("targets.pem")],
            online_keys: vec![self.dir.join("online.pem")],
            crl: None,
            now: slate_imager::operator::bundle::now(),
            no_chunk_index,
            from: from.iter().map(|p| p.to_path_buf()).collect(),
        })
        .expect("slate publish");
    }

    /// `slate publish --crl` with the channel's keys.
    pub fn publish_crl(&self, crl: &Path) {
        repo::publish(&PublishOptions {
            repo: self.repo.clone(),
            targets_keys: vec![self.dir.join("targets.pem")],
            online_keys: vec![self.dir.join("online.pem")],
            crl: Some(crl.to_path_buf()),
            now: slate_imager::operator::bundle::now(),
            ..PublishOptions::default()
        })
        .expect("slate publish --crl");
    }

    /// `slate repo refresh` as if run at `now` (unix seconds): a `now` more than the
    /// timestamp's expiry (a day) in the past leaves an expired timestamp.
    pub fn refresh(&self, now: i64) {
        repo::refresh(&self.repo, &[self.dir.join("online.pem")], now).expect("slate repo refresh");
    }

    /// The repository's `metadata/timestamp.json` as it is now.
    pub fn timestamp(&self) -> Vec<u8> {
        std::fs::read(self.repo.join("metadata/timestamp.json")).expect("timestamp.json")
    }

    /// Serves `bytes` as `metadata/timestamp.json` (a replay of an older one, say).
    pub fn set_timestamp(&self, bytes: &[u8]) {
        std::fs::write(self.repo.join("metadata/timestamp.json"), bytes).expect("timestamp.json");
    }

    /// The published bundle file of `version` in the repository's targets.
    pub fn target_file(&self, version: &str) -> PathBuf {
        let suffix = format!("-{version}.slate");
        std::fs::read_dir(self.repo.join("targets"))
            .expect("targets folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(&suffix))
            .unwrap_or_else(|| panic!("no target for {version} in the repository"))
    }

    /// `slate repo status --seed` as text.
    pub fn status_for(&self, seed: u32) -> String {
        let s = repo::status(&self.repo).expect("slate repo status");
        s.render(
            slate_imager::operator::bundle::now(),
            Some(seed.try_into().expect("seed")),
        )
    }

    /// The body bytes nginx sent for each request of the device with `seed` in `log`, a part
    /// of [`Channel::access_log`] (the combined format: status, then body bytes), with whether
    /// it was a bundle download (`….slate?…`). A line of that device whose byte count does not
    /// parse is an error, not a zero: a bound checked over lines that were skipped would pass
    /// whatever was sent.
    pub fn requests(log: &str, seed: u32) -> Result<Vec<Request>, String> {
        let query = format!("?seed={seed}&");
        log.lines()
            .filter(|l| l.contains(&query))
            .map(|l| {
                let bytes = l
                    .split("HTTP/1.1\" ")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| format!("no body size in the access log line {l:?}"))?;
                Ok(Request {
                    bundle: l.contains(&format!(".slate{query}")),
                    bytes,
                })
            })
            .collect()
    }

    /// Bytes nginx sent in bodies of bundle downloads to the device with `seed` in `log`, and
    /// how many such requests there were (see [`Channel::requests`]).
    pub fn bundle_bytes_sent(log: &str, seed: u32) -> Result<(usize, u64), String> {
        let bundle: Vec<_> = Channel::requests(log, seed)?
            .into_iter()
            .filter(|r| r.bundle)
            .collect();
        Ok((bundle.len(), bundle.iter().map(|r| r.bytes).sum()))
    }

    /// The HTTP status of each bundle request of the device with `seed` in `log` (206 for a
    /// Range answer).
    pub fn bundle_statuses(log: &str, seed: u32) -> Vec<u16> {
        let query = format!(".slate?seed={seed}&");
        log.lines()
            .filter(|l| l.contains(&query))
            .filter_map(|l| {
                l.split("HTTP/1.1\" ")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
            })
            .collect()
    }

    /// How many stretches each bundle request of the device with `seed` in `log` asked for
    /// (its `Range` header, logged before the request time; 0 without one).
    pub fn bundle_ranges(log: &str, seed: u32) -> Vec<usize> {
        let query = format!(".slate?seed={seed}&");
        log.lines()
            .filter(|l| l.contains(&query))
            .map(|l| {
                let range = l.rsplit('"').nth(1).unwrap_or("-");
                match range.strip_prefix("bytes=") {
                    Some(r) => r.split(',').count(),
                    None => 0,
                }
            })
            .collect()
    }

    /// The average rate (bytes per second) nginx sent each bundle download of the device with
    /// `seed` at, from the access log's body bytes and `$request_time` (the last field).
    pub fn bundle_rates(log: &str, seed: u32) -> Result<Vec<(u64, f64)>, String> {
        let query = format!(".slate?seed={seed}&");
        log.lines()
            .filter(|l| l.contains(&query))
            .map(|l| {
                let bytes = l
                    .split("HTTP/1.1\" ")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok());
                let seconds = l
                    .split_whitespace()
                    .last()
                    .and_then(|t| t.parse::<f64>().ok());
                match (bytes, seconds) {
                    (Some(b), Some(s)) if s > 0.0 => Ok((b, b as f64 / s)),
                    _ => Err(format!("no body size or request time in {l:?}")),
                }
            })
            .collect()
    }

    /// nginx's access log so far (it shows each request's `?seed=&version=`).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nginx/access.log")).unwrap_or_default()
    }

    /// Starts nginx on the channel's port; it stops when the guard drops.
    pub fn serve(&self) -> Nginx {
        self.serve_at(None)
    }

    /// [`Channel::serve`] sending at most `rate` per connection (nginx's `limit_rate`, such
    /// as `"256k"`): a download slow enough to cut in the middle.
    pub fn serve_at(&self, rate: Option<&str>) -> Nginx {
        self.serve_on(self.port, rate, None, None)
    }

    /// [`Channel::serve`] with a small socket send buffer (16 KiB), so that what nginx counts
    /// as sent (its `$request_time`) is what left for the device, not megabytes queued in the
    /// kernel: for measuring a device's download rate at the server.
    pub fn serve_measured(&self) -> Nginx {
        self.serve_on(self.port, None, None, Some("16k"))
    }

    /// nginx on the channel's port passing every request to a [`FaultServer`] serving the
    /// repository, whose script of faults the bundle downloads meet.
    pub fn serve_with_faults(&self) -> (Nginx, FaultServer) {
        let origin = FaultServer::start(&self.repo);
        (
            self.serve_on(self.port, None, Some(origin.port), None),
            origin,
        )
    }

    /// nginx on a port of its own behind a [`FaultProxy`] on the channel's port, which can
    /// drop a download in the middle.
    pub fn serve_behind_proxy(&self) -> (Nginx, FaultProxy) {
        let inner = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let nginx = self.serve_on(inner, None, None, None);
        (nginx, FaultProxy::start(self.port, inner))
    }

    /// nginx on `port`, serving the repository itself or passing requests to `origin`, with
    /// `sndbuf` as its sockets' send buffer when given.
    fn serve_on(
        &self,
        port: u16,
        rate: Option<&str>,
        origin: Option<u16>,
        sndbuf: Option<&str>,
    ) -> Nginx {
        let prefix = self.dir.join("nginx");
        std::fs::create_dir_all(prefix.join("tmp")).expect("nginx dir");
        let conf = prefix.join("nginx.conf");
        let p = |name: &str| prefix.join(name).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nuser root;\nworker_processes 1;\npid {pid};\nerror_log {err} info;\nevents {{ worker_connections 64; }}\nhttp {{\n  log_format timed '$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$http_range\" $request_time';\n  access_log {acc} timed;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n  default_type application/octet-stream;\n  server {{\n    listen 127.0.0.1:{port} ssl{sndbuf};\n{limit}    ssl_certificate {crt};\n    ssl_certificate_key {key};\n{serve}  }}\n}}\n",
                pid = p("nginx.pid"),
                err = p("error.log"),
                acc = p("access.log"),
                tmp = p("tmp"),
                port = port,
                sndbuf = sndbuf.map(|b| format!(" sndbuf={b}")).unwrap_or_default(),
                limit = rate.map(|r| format!("    limit_rate {r};\n")).unwrap_or_default(),
                crt = self.dir.join("server.crt").display(),
                key = self.dir.join("server.key").display(),
                serve = match origin {
                    // Unbuffered, so a drop or a stall at the origin reaches the device.
                    Some(o) => format!("    location / {{ proxy_pass http://127.0.0.1:{o}; proxy_buffering off; }}\n"),
                    None => format!("    root {};\n", self.repo.display()),
                },
            ),
        )
        .expect("nginx.conf");
        start_nginx(&prefix, &conf, port)
    }
}

/// nginx with TLS on 127.0.0.1:`port` (the certificate `test_ca` made in `dir`) passing
/// every request to the plain-HTTP origin on `origin`: a fleet server as it is deployed behind
/// a TLS proxy. `server` adds directives to the server block, `location` to the proxy's.
pub(crate) fn tls_front(dir: &Path, port: u16, origin: u16, server: &str, location: &str) -> Nginx {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("tmp")).expect("nginx dir");
    let p = |name: &str| prefix.join(name).display().to_string();
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {pid};\nerror_log {err} info;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {acc};\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {crt};\n    ssl_certificate_key {key};\n{server}    location / {{\n      proxy_pass http://127.0.0.1:{origin};\n      proxy_buffering off;\n      proxy_set_header Host $http_host;\n{location}    }}\n  }}\n}}\n",
            pid = p("nginx.pid"),
            err = p("error.log"),
            acc = p("access.log"),
            tmp = p("tmp"),
            crt = dir.join("server.crt").display(),
            key = dir.join("server.key").display(),
        ),
    )
    .expect("nginx.conf");
    start_nginx(&prefix, &conf, port)
}

/// Starts nginx with `conf` (its prefix folder `prefix`) and waits until it listens on
/// 127.0.0.1:`port`.
pub(crate) fn start_nginx(prefix: &Path, conf: &Path, port: u16) -> Nginx {
    let child = Command::new("nginx")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (cargo xtask deps installs Debian's nginx)");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nginx did not start: {}",
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child }
}

/// A running nginx; stopped on drop.
pub struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master stops its worker before it exits.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn every_line_of_the_device_counts_and_one_that_does_not_parse_is_an_error() {
        let log = "\
127.0.0.1 - - [x] \"GET /targets/p-1.slate?seed=7&version=1.0.0 HTTP/1.1\" 206 1000 \"-\" \"-\"
127.0.0.1 - - [x] \"GET /metadata/timestamp.json?seed=7&version=1.0.0 HTTP/1.1\" 200 300 \"-\" \"-\"
127.0.0.1 - - [x] \"GET /targets/p-1.slate?seed=8&version=1.0.0 HTTP/1.1\" 200 5000 \"-\" \"-\"
";
        assert_eq!(Channel::bundle_bytes_sent(log, 7), Ok((1, 1000)));
        assert_eq!(Channel::bundle_bytes_sent(log, 9), Ok((0, 0)));
        let garbled =
            format!("{log}127.0.0.1 \"GET /targets/p-1.slate?seed=7&v HTTP/1.1\" 200 -\n");
        assert!(Channel::bundle_bytes_sent(&garbled, 7).is_err());
    }
}
