//! `GET /metrics` on the stand-in engine: Prometheus' text format, counters that follow the requests.

#[allow(unused_imports)]
use super::*;
