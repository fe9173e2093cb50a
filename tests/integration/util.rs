//! Helpers shared by the integration modules.

use std::path::PathBuf;

/// The shared real-data folder (`../shared/data` beside the checkout), if present.
pub(crate) fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    dir.is_dir().then_some(dir)
}
