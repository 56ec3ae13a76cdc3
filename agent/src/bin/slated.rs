//! `slated`: the Slate update agent (status API, signed A/B updates, health-gated commit).
//!
//! Placeholder until the Boot and Updates issues land; the imager ships it at `/usr/bin/slated`.

fn main() {
    println!("slated {}: not implemented yet", env!("CARGO_PKG_VERSION"));
}
