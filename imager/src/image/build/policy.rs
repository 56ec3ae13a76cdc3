//! What `slate build` refuses or warns about before it builds: an image with a trust file goes
//! to real devices, so it has no unauthenticated way in and no development convenience unless
//! the command line asks for it by name (`--allow-insecure`, `--allow-debug`). Pure.

use crate::error::BuildError;
use crate::spec::ImageSpec;
use std::path::Path;

/// What the command line allows by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allow {
    /// Plain HTTP in an image with a trust file.
    pub insecure: bool,
    /// A debug shell or test hooks in an image with a trust file.
    pub debug: bool,
}

/// The facts the policy judges, besides the spec.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// A trust file is baked in (the image accepts updates: a production image).
    pub trust: bool,
    /// An operator CA is baked in.
    pub operators: bool,
}

/// Refuses what an image must not be; returns the warnings for what it should not be.
pub fn check(
    spec_path: &Path,
    spec: &ImageSpec,
    facts: Facts,
    allow: Allow,
) -> Result<Vec<String>, BuildError> {
    let refuse = |field: &str, why: String| BuildError::Spec {
        path: spec_path.to_path_buf(),
        field: field.into(),
        why,
    };
    let agent = &spec.agent;
    if agent.token.is_some() {
        return Err(refuse(
            "agent.token",
            slate_core::config::TOKEN_REMOVED.into(),
        ));
    }
    if facts.trust && agent.insecure_http && !allow.insecure {
        return Err(refuse(
            "agent.insecure_http",
            "an image with a trust file must not serve its API without TLS and authentication; remove it, or pass --allow-insecure for a development image".into(),
        ));
    }
    if facts.trust && !allow.debug {
        if spec.debug_shell {
            return Err(refuse(
                "debug_shell",
                "an image with a trust file must not give a root shell on the console; set debug_shell = false, or pass --allow-debug for a development image".into(),
            ));
        }
        if agent.test_hooks {
            return Err(refuse(
                "agent.test_hooks",
                "test hooks let the console's firmware halt an install; they are for test images only (pass --allow-debug)".into(),
            ));
        }
    }
    let mut warnings = Vec::new();
    if agent.insecure_http {
        warnings.push("agent.insecure_http: the API is plain HTTP and anyone on the network may use it (development only)".to_string());
    } else if !facts.operators {
        warnings.push("no operator CA (spec agent.operators or --operators): the agent's API will authorise no request; make one with `slate ca init`".to_string());
    }
    Ok(warnings)
}
