//! MLX Knife's inference engine, on mlx-rs and MLX.
//!
//! MLX runs on Metal on macOS and on the CPU elsewhere (the official `mlx-cpu` wheel); the
//! engine reports which. The model architectures and generation loop arrive with the engine
//! issue; this crate already owns the MLX runtime the rest of the product links against.

pub mod runtime;

pub use runtime::{DeviceKind, RuntimeInfo};
