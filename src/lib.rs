//! powertrain: a small CNN training engine with hand-written CUDA kernels that measures what training costs
//! in energy, per step and per kernel launch.
//!
//! Data flows one way: files -> `data` loaders -> batches -> `backend` ops (through `model`) -> step
//! records (`train`, `energy`) -> `report`s. The energy meter observes launches and steps; it never changes
//! what is computed.

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod data;
pub mod energy;
pub mod model;
pub mod ops;
pub mod report;
pub mod stats;
pub mod study;
pub mod train;
pub mod util;

/// Version of the study protocol (`../shared/docs/protocol.md`), written into every result.
pub const PROTOCOL_VERSION: u32 = 1;
