//! The operators' CRL a channel publishes (`slate publish --crl`, target `operators.crl`),
//! handed to the operator CA when it changed.

use crate::marker;
use crate::slated::daemon::Agent;
use slate_core::api::Marker;
use slate_core::channel::OPERATORS_CRL_TARGET;
use tough::TargetName;

/// Hands the operator CA a CRL the channel publishes (`slate publish --crl`) when it changed
/// since the last check: the CA takes it if its own signature verifies and it is newer than the
/// kept one. A CRL that cannot be read or is refused is a warning, never a failed check: the
/// update path does not depend on it.
pub(super) async fn take_operators_crl(
    agent: &Agent,
    repo: &tough::Repository,
    seen: &mut Option<Vec<u8>>,
) {
    let Ok(name) = TargetName::new(OPERATORS_CRL_TARGET) else {
        return;
    };
    let Some(target) = repo.targets().signed.targets.get(&name) else {
        return;
    };
    let sha = target.hashes.sha256.to_vec();
    if seen.as_ref() == Some(&sha) {
        return;
    }
    let Some(ca) = agent.operator_ca.get() else {
        *seen = Some(sha);
        return;
    };
    let bytes = match repo.read_target(&name).await {
        Ok(Some(stream)) => {
            use tough::IntoVec;
            stream.into_vec().await.map_err(anyhow::Error::new)
        }
        Ok(None) => return,
        Err(e) => Err(anyhow::Error::new(e)),
    };
    match bytes.map(|b| ca.offer_crl(&b).map_err(anyhow::Error::new)) {
        Ok(Ok(this_update)) => {
            marker::emit(&Marker::OperatorsCrl { this_update });
            *seen = Some(sha);
        }
        Ok(Err(e)) => {
            marker::warn(format!("channel: the operators' CRL is not taken: {e:#}"));
            *seen = Some(sha);
        }
        Err(e) => marker::warn(format!("channel: reading the operators' CRL: {e:#}")),
    }
}
