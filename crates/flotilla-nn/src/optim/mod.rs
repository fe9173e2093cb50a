//! Optimisers and schedules: SGD with momentum and weight decay, step learning-rate
//! schedules, and the method's distillation-weight ramp.

mod schedule;
mod sgd;

pub use schedule::{LrSchedule, kd_weight};
pub use sgd::{Sgd, SgdConfig};
