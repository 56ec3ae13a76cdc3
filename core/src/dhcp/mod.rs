//! DHCPv4 messages (RFC 2131, options from RFC 2132): what a client sends and what it reads
//! from a server's answer, and ([`lease`]) which answers a client takes and when it renews.
//! Pure bytes in and out; the agent's `dhcp` module owns the socket.
//!
//! ```text
//! op htype hlen hops | xid | secs flags | ciaddr | yiaddr | siaddr | giaddr | chaddr (16)
//! sname (64) | file (128) | magic 99.130.83.99 | options (code, len, value)… 255
//! ```

use std::net::Ipv4Addr;

pub mod lease;

/// UDP port a server listens on.
pub const SERVER_PORT: u16 = 67;
/// UDP port a client listens on.
pub const CLIENT_PORT: u16 = 68;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const FIXED: usize = 236;
/// Ask servers to broadcast their answers: the client has no address to receive unicast on.
const BROADCAST_FLAG: u16 = 0x8000;

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// Client looks for servers.
    Discover = 1,
    /// Server offers an address.
    Offer = 2,
    /// Client asks for the offered (or its current) address.
    Request = 3,
    /// Server confirms.
    Ack = 5,
    /// Server refuses.
    Nak = 6,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            _ => return None,
        })
    }
}

/// What the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// Discover or Request.
    pub kind: MessageType,
    /// Transaction id: answers carry it back.
    pub xid: u32,
    /// The interface's hardware address.
    pub mac: [u8; 6],
    /// Requested address (option 50), for a Request after an Offer.
    pub requested: Option<Ipv4Addr>,
    /// Server identifier (option 54) of the offer taken.
    pub server: Option<Ipv4Addr>,
    /// Hostname to announce (option 12).
    pub hostname: Option<String>,
    /// The client's current address (`ciaddr`), when renewing or rebinding a lease it holds:
    /// the server then answers it by unicast, and the broadcast flag is off.
    pub ciaddr: Option<Ipv4Addr>,
}

impl ClientMessage {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = 1; // BOOTREQUEST
        m[1] = 1; // Ethernet
        m[2] = 6;
        m[4..8].copy_from_slice(&self.xid.to_be_bytes());
        match self.ciaddr {
            Some(ip) => m[12..16].copy_from_slice(&ip.octets()),
            None => m[10..12].copy_from_slice(&BROADCAST_FLAG.to_be_bytes()),
        }
        m[28..34].copy_from_slice(&self.mac);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, self.kind as u8]);
        // Client identifier: hardware type 1 (Ethernet) and the address, 7 bytes.
        m.extend_from_slice(&[61, 7, 1]);
        m.extend_from_slice(&self.mac);
        if let Some(ip) = self.requested {
            m.extend_from_slice(&[50, 4]);
            m.extend_from_slice(&ip.octets());
        }
        if let Some(ip) = self.server {
            m.extend_from_slice(&[54, 4]);
            m.extend_from_slice(&ip.octets());
        }
        if let Some(h) = &self.hostname {
            let h = &h.as_bytes()[..h.len().min(255)];
            m.push(12);
            m.push(u8::try_from(h.len()).unwrap_or(u8::MAX));
            m.extend_from_slice(h);
        }
        // Parameters wanted: netmask, router, DNS, lease time, renewal and rebinding times.
        m.extend_from_slice(&[55, 6, 1, 3, 6, 51, 58, 59]);
        m.push(255);
        // Some servers drop messages shorter than a BOOTP packet (300 bytes).
        if m.len() < 300 {
            m.resize(300, 0);
        }
        m
    }
}

/// A server's answer, as far as a client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    /// Offer, Ack or Nak.
    pub kind: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// The address offered or confirmed (`yiaddr`).
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask (option 1); 24 when absent.
    pub prefix: u8,
    /// The subnet mask as sent (option 1), so a non-contiguous one can be refused.
    pub mask: Option<Ipv4Addr>,
    /// First router (option 3).
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds (option 51); None for an infinite or missing lease.
    pub lease_s: Option<u32>,
    /// Server identifier (option 54).
    pub server: Option<Ipv4Addr>,
    /// Renewal time T1 in seconds (option 58).
    pub renewal_s: Option<u32>,
    /// Rebinding time T2 in seconds (option 59).
    pub rebinding_s: Option<u32>,
}

/// Why bytes are not a server's answer to us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Too short, not a reply, no magic cookie, or an option that runs past the end.
    #[error("not a DHCP reply: {0}")]
    Malformed(&'static str),
    /// No message type option, or one a client does not take.
    #[error("DHCP reply without a usable message type")]
    NoType,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl ServerMessage {
    /// Parses a server's answer.
    pub fn parse(b: &[u8]) -> Result<ServerMessage, DhcpError> {
        if b.len() < FIXED + 4 {
            return Err(DhcpError::Malformed("shorter than the fixed header"));
        }
        if b[0] != 2 {
            return Err(DhcpError::Malformed("not a BOOTREPLY"));
        }
        if b[FIXED..FIXED + 4] != MAGIC {
            return Err(DhcpError::Malformed("no magic cookie"));
        }
        let mut msg = ServerMessage {
            kind: MessageType::Nak,
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            address: ip(&b[16..20]),
            prefix: 24,
            mask: None,
            router: None,
            dns: Vec::new(),
            lease_s: None,
            server: None,
            renewal_s: None,
            rebinding_s: None,
        };
        let mut kind = None;
        let mut i = FIXED + 4;
        while i < b.len() {
            let code = b[i];
            if code == 255 {
                break;
            }
            if code == 0 {
                i += 1;
                continue;
            }
            let len =
                *b.get(i + 1)
                    .ok_or(DhcpError::Malformed("option without length"))? as usize;
            let v = b
                .get(i + 2..i + 2 + len)
                .ok_or(DhcpError::Malformed("option runs past the end"))?;
            match (code, len) {
                (53, 1) => kind = MessageType::from_u8(v[0]),
                (1, 4) => {
                    let mask = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                    msg.prefix = u8::try_from(mask.count_ones()).unwrap_or(32);
                    msg.mask = Some(ip(v));
                }
                (3, l) if l >= 4 => msg.router = Some(ip(v)),
                (6, l) if l >= 4 => msg.dns = v.chunks_exact(4).map(ip).collect(),
                (51, 4) => {
                    let s = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                    msg.lease_s = (s != u32::MAX).then_some(s);
                }
                (54, 4) => msg.server = Some(ip(v)),
                (58, 4) => msg.renewal_s = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                (59, 4) => msg.rebinding_s = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                _ => {}
            }
            i += 2 + len;
        }
        msg.kind = match kind {
            Some(k @ (MessageType::Offer | MessageType::Ack | MessageType::Nak)) => k,
            _ => return Err(DhcpError::NoType),
        };
        Ok(msg)
    }
}

/// The `/etc/resolv.conf` text for a lease's DNS servers (at most three, as glibc reads).
pub fn resolv_conf(dns: &[Ipv4Addr]) -> String {
    let mut text = String::from("# written by slate-init from the DHCP lease\n");
    for d in dns.iter().take(3) {
        text.push_str(&format!("nameserver {d}\n"));
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn reply(kind: u8, xid: u32, yiaddr: [u8; 4], options: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = 2;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[16..20].copy_from_slice(&yiaddr);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind]);
        m.extend_from_slice(options);
        m.push(255);
        m
    }

    #[test]
    fn a_discover_is_a_broadcast_bootrequest_with_the_options_a_client_needs() {
        let m = ClientMessage {
            kind: MessageType::Discover,
            xid: 0x1234_5678,
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            requested: None,
            server: None,
            hostname: Some("slate".into()),
            ciaddr: None,
        }
        .encode();
        assert_eq!(m.len(), 300);
        assert_eq!(&m[..4], &[1, 1, 6, 0]);
        assert_eq!(&m[4..8], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&m[10..12], &[0x80, 0]);
        assert_eq!(&m[28..34], &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(&m[FIXED..FIXED + 4], &MAGIC);
        assert_eq!(&m[FIXED + 4..FIXED + 7], &[53, 1, 1]);
        let opts = &m[FIXED + 4..];
        assert!(opts
            .windows(7)
            .any(|w| w == [12, 5, b's', b'l', b'a', b't', b'e']));
        assert!(opts.windows(8).any(|w| w == [55, 6, 1, 3, 6, 51, 58, 59]));
        // A renewal names its address and asks for a unicast answer.
        let renew = ClientMessage {
            kind: MessageType::Request,
            xid: 1,
            mac: [0; 6],
            requested: None,
            server: None,
            hostname: None,
            ciaddr: Some(Ipv4Addr::new(10, 0, 2, 15)),
        }
        .encode();
        assert_eq!(
            (&renew[10..12], &renew[12..16]),
            (&[0, 0][..], &[10, 0, 2, 15][..])
        );
    }

    #[test]
    fn an_ack_gives_address_prefix_router_dns_and_lease() {
        let b = reply(
            5,
            7,
            [10, 0, 2, 15],
            &[
                1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2, 6, 8, 10, 0, 2, 3, 1, 1, 1, 1, 51, 4, 0,
                0, 0x0e, 0x10, 54, 4, 10, 0, 2, 2,
            ],
        );
        let m = ServerMessage::parse(&b).unwrap();
        assert_eq!(m.kind, MessageType::Ack);
        assert_eq!(m.xid, 7);
        assert_eq!(m.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(m.prefix, 24);
        assert_eq!(m.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            m.dns,
            [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(m.lease_s, Some(3600));
        assert_eq!(m.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            resolv_conf(&m.dns),
            "# written by slate-init from the DHCP lease\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_are_refused() {
        let mut b = reply(2, 1, [10, 0, 0, 9], &[3, 4, 10, 0]);
        assert_eq!(
            ServerMessage::parse(&b),
            Err(DhcpError::Malformed("option runs past the end"))
        );
        b = reply(1, 1, [0; 4], &[]);
        assert_eq!(ServerMessage::parse(&b), Err(DhcpError::NoType));
        assert!(ServerMessage::parse(&b[..100]).is_err());
        let mut request = reply(2, 1, [0; 4], &[]);
        request[0] = 1;
        assert!(ServerMessage::parse(&request).is_err());
    }
}
