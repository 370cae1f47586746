//! The model-cache core of MLX Knife.
//!
//! Reads the Hugging Face hub cache exactly as `huggingface_hub` writes it, resolves the model
//! names people type, classifies what each model is, checks its integrity and removes it safely.
//! It keeps MLX Knife's secrets in the OS keyring ([`secrets`]) and talks to the Hugging Face Hub
//! as a client ([`hub`]). It knows nothing of the CLI, of serving HTTP or of the menu-bar app:
//! every shell calls the same functions and shows the same errors. Results are `serde` types so
//! a GUI can use them as-is (secrets deliberately are not).

pub mod architectures;
pub mod cache;
pub mod classify;
pub mod error;
pub mod hashing;
pub mod health;
pub mod hint;
pub mod hub;
pub mod install;
pub mod library;
pub mod metadata;
pub mod model;
pub mod remove;
pub mod repo_id;
pub mod resolve;
pub mod secrets;
pub mod snapshot;
pub mod snapshot_writer;
pub mod staging;
pub mod system;
pub mod usage;
pub mod weights;
pub mod workspace;
pub mod workspace_hash;

pub use cache::HubCache;
pub use error::{CoreError, ErrorKind};
pub use hint::Hint;
pub use library::{Library, RunnableModel};
pub use model::ModelInfo;
pub use repo_id::{ModelSpec, RepoId};
