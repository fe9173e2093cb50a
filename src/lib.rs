//! Flotilla: deterministic actor simulation of heterogeneous federated learning.
//!
//! This facade re-exports the workspace crates as modules and gathers the everyday names
//! in [`prelude`].

#[doc(inline)]
pub use flotilla_actors as actors;
#[doc(inline)]
pub use flotilla_data as data;
#[doc(inline)]
pub use flotilla_fl as fl;
#[doc(inline)]
pub use flotilla_nn as nn;
#[doc(inline)]
pub use flotilla_sim as sim;
#[doc(inline)]
pub use flotilla_train as train;

/// The names most programs need: `use flotilla::prelude::*;`.
pub mod prelude {
    #[doc(no_inline)]
    pub use flotilla_data::{Dataset, SyntheticConfig};
    #[doc(no_inline)]
    pub use flotilla_nn::{ModelSpec, Network, SgdConfig, Shape, Weights};
    #[doc(no_inline)]
    pub use flotilla_train::{BatchLoader, Trainer, evaluate};
}
