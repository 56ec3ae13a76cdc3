//! What `slate build` refuses or warns about before it builds: an image with a trust file goes
//! to real devices, so it has no unauthenticated way in and no development convenience unless
//! the command line asks for it by name (`--allow-insecure`, `--allow-debug`). Pure.

use crate::error::BuildError;
use crate::image::spec::ImageSpec;
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
    for s in &spec.services {
        if s.user.as_deref().unwrap_or("root") == "root" {
            warnings.push(format!(
                "service {} runs as root with every capability; give it a `user` (a [[user]]) and only the `capabilities` it needs",
                s.name
            ));
        }
    }
    if agent.insecure_http {
        warnings.push("agent.insecure_http: the API is plain HTTP and anyone on the network may use it (development only)".to_string());
    } else if !facts.operators {
        warnings.push("no operator CA (spec agent.operators or --operators): the agent's API will authorise no request; make one with `slate ca init`".to_string());
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> ImageSpec {
        toml::from_str(&format!(
            "name = \"t\"\nversion = \"1.0.0\"\nboard = \"b\"\n{extra}"
        ))
        .unwrap()
    }

    const PROD: Facts = Facts {
        trust: true,
        operators: true,
    };

    #[test]
    fn an_image_with_a_trust_file_has_no_way_in_unless_asked_by_name() {
        let p = Path::new("image.toml");
        let none = Allow::default();
        let err = |s: &ImageSpec, a| check(p, s, PROD, a).unwrap_err().to_string();
        assert!(err(&spec("[agent]\ntoken = \"x\""), none).contains("slate ca init"));
        let insecure = spec("[agent]\ninsecure_http = true");
        assert!(err(&insecure, none).contains("--allow-insecure"));
        let allow = Allow {
            insecure: true,
            debug: false,
        };
        assert!(check(p, &insecure, PROD, allow).is_ok());
        assert!(err(&spec("debug_shell = true"), none).contains("--allow-debug"));
        assert!(err(&spec("[agent]\ntest_hooks = true"), none).contains("--allow-debug"));
        // Without a trust file (a development image that takes no updates) they are fine.
        let dev = Facts {
            trust: false,
            operators: false,
        };
        let w = check(p, &spec("debug_shell = true"), dev, none).unwrap();
        assert!(w.iter().any(|w| w.contains("no operator CA")), "{w:?}");
    }

    #[test]
    fn a_root_service_is_warned_about() {
        let s = spec("[[service]]\nname = \"web\"\nexec = [\"/bin/web\"]\n");
        let w = check(Path::new("i.toml"), &s, PROD, Allow::default()).unwrap();
        assert!(
            w.iter().any(|w| w.contains("service web runs as root")),
            "{w:?}"
        );
    }
}
