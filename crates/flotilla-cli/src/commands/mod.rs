//! One module per subcommand.

pub(crate) mod models;
pub(crate) mod run;
pub(crate) mod train;

/// Exit code for an error: 2 for bad input the user can fix (arguments, files, data), 1 for
/// anything else.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    let user_error = err.chain().any(|e| {
        e.is::<flotilla_nn::NnError>()
            || e.is::<flotilla_data::DataError>()
            || e.is::<flotilla_experiment::UnknownDataset>()
            || e.is::<flotilla_experiment::ConfigError>()
            || e.downcast_ref::<flotilla_experiment::ExperimentError>()
                .is_some_and(flotilla_experiment::ExperimentError::is_user_error)
    });
    if user_error { 2 } else { 1 }
}
