//! The fleet server as a third update source (`[fleet]`): Eclipse hawkBit's Direct Device
//! Integration (DDI) API, version 1, as hawkBit documents it and goosebit serves it. A fleet
//! server knows each device (its version, its last update) and steers rollouts; the device
//! still decides with its own install plan and policy, and reports every step back.
//!
//! This module is the pure part the agent and the tests share: the image's configuration
//! (`config`), the server's documents and the device's answers (`ddi`), and what an action's
//! outcome is once the device has rebooted (`outcome`).

pub mod config;
pub mod ddi;
pub mod outcome;

pub use config::{FleetConfig, FleetUrl};
