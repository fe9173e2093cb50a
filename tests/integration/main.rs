//! The root integration suite: one binary, one module per behaviour.

mod centralised;
mod util;
