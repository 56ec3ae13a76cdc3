//! `slated`, the update agent: it serves the operator API over mutual TLS, takes signed
//! bundles by push, from the channel or from a fleet server, installs them into the idle slot, and after the reboot
//! runs the health checks that commit the new slot or roll it back.

pub mod channel;
pub mod conntable;
pub mod consent;
pub mod daemon;
pub mod fleet;
pub mod handshakes;
pub mod health;
pub mod http;
pub mod identity;
pub mod install;
pub mod operators;
pub mod resume;
pub mod routes;
pub mod server;
pub mod state;
pub mod throttle;
