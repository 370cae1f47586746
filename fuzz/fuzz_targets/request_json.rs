//! A request body for every JSON endpoint, through the server's parsing and validation: a 4xx
//! error or a job, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlxk_server::fuzzing::{check_request, Endpoint};

fuzz_target!(|data: &[u8]| {
    for endpoint in [Endpoint::Chat, Endpoint::Completion] {
        if let Err(error) = check_request(endpoint, data) {
            assert!(error.status.is_client_error(), "{}: {}", error.status, error.message);
        }
    }
});
