//! The core's behaviour tests in one binary: the library on fixture caches, and pull, push and
//! whoami against the local test Hub.

mod hub;
mod hub_whoami;
mod library;
