//! The DDI server's HTTP origin: one request per connection (nginx speaks HTTP/1.0 to its
//! upstreams), the device known by the client certificate nginx passes on, and one function
//! per DDI resource.

use super::{advance, lock, ActionStatus, Fault, Received, Route, State, TENANT};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One exchange: the connection, the request, the server's state, and who asks.
struct Call<'a> {
    conn: TcpStream,
    req: Request,
    state: &'a Mutex<State>,
    /// The controller id in the path (checked against the certificate).
    cid: String,
    /// `https://<host>/<tenant>/controller/v1/<cid>`, for links.
    base: String,
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

/// Answers the next fault scripted for `route` and this device, if there is one that replaces
/// the whole answer; true when it did.
fn faulted(c: &mut Call<'_>, route: Route) -> bool {
    let fault = take_fault(&mut lock(c.state), route, &c.cid);
    fault.is_some_and(|f| answer_fault(&mut c.conn, &f))
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

/// Answers one connection: the path names tenant, controller and resource; a certificate
/// that does not entitle its holder to that controller id gets 403.
pub(super) fn answer(mut conn: TcpStream, state: &Mutex<State>) -> Option<()> {
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
    let method = req.method.clone();
    let mut c = Call {
        conn,
        req,
        state,
        cid,
        base,
    };
    match (method.as_str(), rest) {
        ("GET", []) => base_resource(&mut c, fingerprint),
        ("PUT", ["configData"]) => config_data(&mut c),
        ("GET", ["deploymentBase", id]) => deployment(&mut c, id),
        ("POST", ["deploymentBase", id, "feedback"]) => feedback(&mut c, id),
        ("GET", ["cancelAction", cancel_id]) => cancel(&mut c, cancel_id),
        ("POST", ["cancelAction", cancel_id, "feedback"]) => cancel_feedback(&mut c, cancel_id),
        ("GET", ["softwaremodules", sm, "artifacts", _name]) => artifact(&mut c, sm),
        _ => {
            respond(&mut c.conn, 404, &[], b"");
            Some(())
        }
    }
}

/// The base resource: the action to follow (or cancel) and whether configData is wanted.
fn base_resource(c: &mut Call<'_>, fingerprint: String) -> Option<()> {
    let base = c.base.clone();
    let needs_config = {
        let mut st = lock(c.state);
        let t = st.targets.entry(c.cid.clone()).or_default();
        t.fingerprint = fingerprint;
        t.polls += 1;
        t.attributes.is_empty()
    };
    if faulted(c, Route::Base) {
        return Some(());
    }
    let st = lock(c.state);
    let mut links = serde_json::Map::new();
    let running = st.actions.iter().find(|a| {
        a.target == c.cid && matches!(a.status, ActionStatus::Running | ActionStatus::Canceling)
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
    json_answer(&mut c.conn, &doc);
    Some(())
}

/// `PUT configData`: the device's attributes, merged.
fn config_data(c: &mut Call<'_>) -> Option<()> {
    let mut st = lock(c.state);
    let v: Value = serde_json::from_slice(&c.req.body).unwrap_or(Value::Null);
    let Some(data) = v.get("data").and_then(Value::as_object) else {
        drop(st);
        respond(&mut c.conn, 400, &[], b"");
        return Some(());
    };
    let t = st.targets.entry(c.cid.clone()).or_default();
    for (k, val) in data {
        t.attributes
            .insert(k.clone(), val.as_str().unwrap_or_default().to_string());
    }
    drop(st);
    respond(&mut c.conn, 200, &[], b"");
    Some(())
}

/// `GET deploymentBase/{id}`: the action's bundle, its hashes and links.
fn deployment(c: &mut Call<'_>, id: &str) -> Option<()> {
    let (cid, base) = (c.cid.clone(), c.base.clone());
    let id: u64 = id.parse().ok()?;
    if faulted(c, Route::Deployment) {
        return Some(());
    }
    let st = lock(c.state);
    let Some(a) = st
        .actions
        .iter()
        .find(|a| a.id == id && a.target == c.cid)
        .cloned()
    else {
        drop(st);
        respond(&mut c.conn, 404, &[], b"");
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
                    "download-http": {"href": format!("http://{}/{TENANT}/controller/v1/{cid}/softwaremodules/{}/artifacts/{filename}", c.req.host, a.software)}
                }
            }]
        }]
    });
    if let Some(open) = a.window {
        deployment["maintenanceWindow"] = json!(if open { "available" } else { "unavailable" });
    }
    json_answer(
        &mut c.conn,
        &json!({"id": id.to_string(), "deployment": deployment, "actionHistory": {"status": "RUNNING", "messages": []}}),
    );
    Some(())
}

/// `POST deploymentBase/{id}/feedback`: one more line of the action's history; `closed` ends it (and may move its rollout on).
fn feedback(c: &mut Call<'_>, id: &str) -> Option<()> {
    let id: u64 = id.parse().ok()?;
    if faulted(c, Route::Feedback) {
        return Some(());
    }
    let mut st = lock(c.state);
    let v: Value = serde_json::from_slice(&c.req.body).unwrap_or(Value::Null);
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
        .find(|a| a.id == id && a.target == c.cid)
    else {
        drop(st);
        respond(&mut c.conn, 404, &[], b"");
        return Some(());
    };
    if execution.is_empty() || finished.is_empty() {
        drop(st);
        respond(&mut c.conn, 400, &[], b"");
        return Some(());
    }
    a.feedback.push(Received {
        at: Instant::now(),
        execution: execution.clone(),
        finished: finished.clone(),
        details,
        bytes: c.req.body.len(),
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
    respond(&mut c.conn, 200, &[], b"");
    Some(())
}

/// `GET cancelAction/{id}`: which action to stop.
fn cancel(c: &mut Call<'_>, cancel_id: &str) -> Option<()> {
    let st = lock(c.state);
    let cancel_id: u64 = cancel_id.parse().ok()?;
    let stop = cancel_id.checked_sub(10_000)?;
    drop(st);
    json_answer(
        &mut c.conn,
        &json!({"id": cancel_id.to_string(), "cancelAction": {"stopId": stop.to_string()}}),
    );
    Some(())
}

/// `POST cancelAction/{id}/feedback`: the device accepted the cancel or rejected it.
fn cancel_feedback(c: &mut Call<'_>, cancel_id: &str) -> Option<()> {
    let mut st = lock(c.state);
    let stop = cancel_id.parse::<u64>().ok()?.checked_sub(10_000)?;
    let v: Value = serde_json::from_slice(&c.req.body).unwrap_or(Value::Null);
    let execution = v["status"]["execution"].as_str().unwrap_or("").to_string();
    let finished = v["status"]["result"]["finished"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if let Some(a) = st
        .actions
        .iter_mut()
        .find(|a| a.id == stop && a.target == c.cid)
    {
        a.feedback.push(Received {
            at: Instant::now(),
            execution: format!("cancel-{execution}"),
            finished: finished.clone(),
            details: v["status"]["details"].to_string(),
            bytes: c.req.body.len(),
        });
        a.status = if execution == "closed" && finished == "success" {
            ActionStatus::Canceled
        } else {
            // Rejected: the action goes on.
            ActionStatus::Running
        };
    }
    drop(st);
    respond(&mut c.conn, 200, &[], b"");
    Some(())
}

/// An artefact, whole or by Range, dropped part way when a fault says so.
fn artifact(c: &mut Call<'_>, sm: &str) -> Option<()> {
    let mut st = lock(c.state);
    let sm: usize = sm.parse().ok()?;
    let fault = take_fault(&mut st, Route::Artifact, &c.cid);
    let Some(sw) = st.software.get(sm).cloned() else {
        drop(st);
        respond(&mut c.conn, 404, &[], b"");
        return Some(());
    };
    drop(st);
    if let Some(f) = &fault {
        if answer_fault(&mut c.conn, f) {
            return Some(());
        }
    }
    let bytes = std::fs::read(&sw.path).ok()?;
    let len = bytes.len() as u64;
    let (from, to) = match c.req.range {
        Some((a, b)) if a < len => (a, b.unwrap_or(len - 1).min(len - 1)),
        Some(_) => {
            respond(
                &mut c.conn,
                416,
                &[("Content-Range", format!("bytes */{len}"))],
                b"",
            );
            return Some(());
        }
        None => (0, len - 1),
    };
    let body = &bytes[from as usize..=to as usize];
    let (status, mut headers) = if c.req.range.is_some() {
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
    c.conn.write_all(head.as_bytes()).ok()?;
    let mut sent = 0usize;
    for chunk in body[..send].chunks(64 * 1024) {
        if c.conn.write_all(chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    *lock(c.state).served.entry(c.cid.clone()).or_default() += sent as u64;
    if send < body.len() {
        let _ = c.conn.shutdown(std::net::Shutdown::Both);
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
