//! The root integration suite: one binary, one module per behaviour.

// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod centralised;
mod checkpoint;
mod parity;
mod simulation;
mod stragglers;
mod util;
