//! A local Hugging Face Hub for tests: the parts of the Hub's HTTP API that downloads and
//! uploads use, served on loopback from plain files (see [`store`]).
//!
//! It is kept honest by the official `huggingface_hub` client
//! (`tests/interop/test_testhub_honest.py`): `snapshot_download`, `hf_hub_download`,
//! `create_repo`, `upload_folder` and its error types all work against it. Differences from the
//! Hub: model repos only; files are served directly (no CDN redirect) and never with Xet
//! headers; uploads use the LFS `basic` transfer (clients must not insist on Xet); no pull
//! requests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mlxk_testhub::{HubConfig, RepoSettings, TestHub};
//! let hub = TestHub::start(HubConfig::new("/tmp/hub").token("hf_test", "alice")).await?;
//! hub.seed("fixtures/tiny".as_ref(), "org/tiny", RepoSettings::default(), Some("v1.0"))?;
//! std::env::set_var("HF_ENDPOINT", hub.url());
//! hub.stop().await;
//! # Ok(()) }
//! ```

mod api;
mod config;
mod error;
pub mod git;
mod handle;
mod request_log;
pub mod store;
pub mod upload_mode;

pub use config::{HubConfig, Knobs, Users};
pub use error::HubError;
pub use handle::{seed, StartError, TestHub};
pub use request_log::RequestRecord;
pub use store::{Commit, FileEntry, Gate, RepoId, RepoSettings, Store, StoreError};
