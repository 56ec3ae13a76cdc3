//! Reaching the guest through its forwarded ports: the agent's API (over TLS with the VM's
//! client configuration, or plain HTTP) and an application's ports.

use crate::vm::Vm;
use anyhow::{Context, Result};
use std::time::Duration;

impl Vm {
    /// Forwarded loopback port of the agent.
    pub fn host_port(&self) -> Option<u16> {
        self.host_port
    }

    /// The host port forwarded to one of [`VmConfig::extra_ports`].
    pub fn forwarded(&self, guest: u16) -> Option<u16> {
        self.extra_ports
            .iter()
            .find_map(|&(g, host)| (g == guest).then_some(host))
    }

    /// The TLS client configuration the VM's requests use (None: plain HTTP).
    pub fn tls_config(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// Switches the VM's requests to `tls` (None: plain HTTP, for an `insecure_http` image).
    pub fn set_tls(&mut self, tls: Option<std::sync::Arc<rustls::ClientConfig>>) {
        self.tls = tls;
    }

    /// `https://127.0.0.1:<port>` of the agent (`http://` when the VM has no TLS client).
    pub fn agent_url(&self) -> Option<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.host_port.map(|p| format!("{scheme}://127.0.0.1:{p}"))
    }

    /// One HTTP/1.1 request to the agent (ureq's client, over TLS with the VM's client
    /// configuration); returns (status, body) whatever the status.
    pub fn http(&self, method: &str, path: &str) -> Result<(u16, String)> {
        let url = self.agent_url().context("no forwarded port")?;
        let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            agent = agent.tls_config(tls.clone());
        }
        let agent = agent.build();
        let resp = match agent
            .request(method, &format!("{url}{path}"))
            .set("Content-Length", "0")
            .call()
        {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e).with_context(|| format!("{method} {path}")),
        };
        let code = resp.status();
        let body = resp.into_string().context("reading the answer")?;
        Ok((code, body))
    }
}
