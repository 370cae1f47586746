//! The app's tests in one binary (linking the app is most of their time): its commands on a
//! fixture cache, background transfers against the local test Hub, the tray on Tauri's mock
//! runtime, and the generated TypeScript bindings.

mod bindings;
mod commands;
mod common;
mod transfers;
mod tray;
