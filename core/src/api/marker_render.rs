//! How each [`Marker`] reads on the console: its `Kind`'s words, then its values. The wording
//! is the contract waiters and operators read (pinned by the golden test).

use super::{Marker, PREFIX};
use std::fmt;

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(self.kind().words())?;
        match self {
            Marker::Stage1Done { slot, root, ms } => {
                write!(f, " slot={slot} root={root} in {ms} ms")
            }
            Marker::Stage2Up { ms, services } => {
                write!(f, " in {ms} ms since boot ({services} services)")
            }
            Marker::Healthy { slot, version, ms } => {
                write!(f, " slot={slot} version={version} in {ms} ms since boot")
            }
            Marker::Unhealthy {
                slot,
                version,
                failed,
            } => write!(f, " slot={slot} version={version} failed={failed}"),
            Marker::Committed { slot, version } => {
                write!(f, " slot={slot} version={version}")
            }
            Marker::Rollback {
                slot,
                version,
                reason,
            } => write!(f, " slot={slot} version={version} reason={reason}"),
            Marker::Fallback {
                from,
                starts,
                marked,
            } => write!(
                f,
                " from={from} to={} reason=\"{starts} starts without becoming healthy\" marked={marked}",
                from.other()
            ),
            Marker::Installing {
                product,
                version,
                slot,
                device,
            } => write!(f, " {product} {version} into slot {slot} ({device})"),
            Marker::Installed {
                slot,
                version,
                seconds,
            } => write!(
                f,
                " slot={slot} version={version} in {seconds:.1} s; reboot to try it"
            ),
            Marker::UpdateRefused { reason } => write!(f, " {reason}"),
            Marker::EspRepaired { what } => write!(f, " {what}"),
            Marker::CutPoint { step } => write!(f, " {step}"),
            Marker::Shutdown { reboot } => {
                write!(f, " {}", if *reboot { "reboot" } else { "poweroff" })
            }
            Marker::RebootingIntoNewSlot => Ok(()),
            Marker::Identity { fingerprint } => write!(f, " fingerprint={fingerprint}"),
            Marker::BelowFloor { slot, epoch, floor } => write!(
                f,
                " slot={slot} epoch={epoch} floor={floor}; not started"
            ),
            Marker::Api {
                port,
                tls: true,
                operators,
            } => write!(
                f,
                " https port={port} operators={}",
                if *operators { "ca" } else { "none" }
            ),
            Marker::Api { port, tls: false, .. } => {
                write!(f, " http port={port} (insecure, development only)")
            }
            Marker::BootDisk { device, esp } => write!(f, " {device} esp={esp}"),
            Marker::DataGrown { what, mib } => write!(f, " {what} {mib} MiB"),
            Marker::NetworkLease {
                iface,
                address,
                router,
            } => {
                write!(f, " iface={iface} address={address}")?;
                match router {
                    Some(r) => write!(f, " router={r}"),
                    None => write!(f, " router=none"),
                }
            }
            Marker::SecureBoot {
                enabled,
                lockdown,
                built_for,
            } => {
                let on = if *enabled { "on" } else { "off" };
                write!(f, " {on} lockdown={lockdown} built_for={built_for}")?;
                if *built_for && !*enabled {
                    write!(
                        f,
                        "; WARNING: this image was built for Secure Boot and the firmware has it off: its root hash is not authenticated"
                    )?;
                }
                Ok(())
            }
            Marker::DataSealed { how, ms } => write!(f, " {how} ms={ms}"),
            Marker::DataPlain { why } => write!(f, " {why}"),
            Marker::StageFailed { error, .. } => write!(f, " {error}"),
            Marker::ServiceFailedToStart { name, error } => {
                write!(f, " {name} failed to start: {error}")
            }
            Marker::ServiceExited {
                name,
                exit,
                restart_ms: Some(ms),
            } => write!(f, " {name} exited ({exit}); restart in {ms} ms"),
            Marker::ServiceExited {
                name,
                exit,
                restart_ms: None,
            } => write!(f, " {name} exited ({exit}); not restarted"),
            Marker::Warning(text) => write!(f, " {text}"),
            Marker::ChannelUpToDate { version } => {
                write!(f, " version={version}")
            }
            Marker::ChannelWaiting {
                version,
                wave,
                ready_at,
            } => write!(
                f,
                " version={version} wave={wave} ready_at={ready_at}"
            ),
            Marker::ChannelUpdate { version, reason } => {
                write!(f, " version={version} reason={reason}")
            }
            Marker::ChannelError { kind, message } => {
                write!(f, " kind={kind}: {message}")
            }
            Marker::ChannelResumed { version, from_slot } => {
                write!(f, " version={version} from_slot={from_slot}")
            }
            Marker::ChannelFetched {
                version,
                bytes,
                resumes,
                from_slot,
                copied,
                requests,
                patch,
            } => write!(
                f,
                " version={version} bytes={bytes} resumes={resumes} from_slot={from_slot} copied={copied} requests={requests} patch={patch}"
            ),
            Marker::OperatorsCrl { this_update } => write!(f, " this_update={this_update}"),
            Marker::ChannelFetching {
                version,
                mode,
                bytes,
                of,
            } => write!(f, " version={version} mode={mode} bytes={bytes} of {of}"),
            Marker::Staged {
                slot,
                version,
                apply_at,
            } => {
                write!(f, " slot={slot} version={version} apply_at=")?;
                match apply_at {
                    Some(t) => write!(f, "{t}"),
                    None => f.write_str("manual"),
                }
            }
            Marker::Applying { slot, version } => write!(f, " slot={slot} version={version}"),
            Marker::Consent {
                answer,
                version,
                ask_again_at,
                reason,
            } => write!(
                f,
                " {answer} version={version} ask_again_at={ask_again_at}: {reason}"
            ),
            Marker::FleetPolling { server, controller } => {
                write!(f, " server={server} controller={controller}")
            }
            Marker::FleetAction {
                action,
                version,
                step,
            } => write!(f, " id={action} version={version} step={step}"),
            Marker::FleetFeedback {
                action,
                execution,
                finished,
                sent,
            } => write!(
                f,
                " id={action} execution={execution} finished={finished} {}",
                if *sent { "sent" } else { "queued" }
            ),
            Marker::FleetError { message } => write!(f, " {message}"),
            Marker::FactoryReset { new_identity } => write!(
                f,
                " identity={}",
                if *new_identity { "new" } else { "kept" }
            ),
        }
    }
}
