//! Facts about the machine that the shells report.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SystemInfo {
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

impl SystemInfo {
    pub fn read() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        SystemInfo {
            memory_total_bytes: system.total_memory(),
            memory_available_bytes: system.available_memory(),
        }
    }
}
