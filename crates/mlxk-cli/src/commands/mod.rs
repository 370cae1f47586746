//! One module per command; each parses nothing itself and calls the core.

pub mod convert;
pub mod health;
pub mod list;
pub mod rm;
pub mod run;
pub mod serve;
pub mod show;
pub mod version;
