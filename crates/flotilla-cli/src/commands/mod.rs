//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod cluster;
pub(crate) mod fleet;
pub(crate) mod models;
pub(crate) mod new_file;
pub(crate) mod run;
pub(crate) mod trace;
pub(crate) mod train;

/// Exit code for an error: 2 for bad input the user can fix (arguments, files, data, an
/// output folder or file that may not be replaced), 1 for anything else (a node failure, an I/O
/// error). A run that finished with a model that is not a result exits with 3
/// ([`run::EXIT_NOT_ALL_RESULTS`]).
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    let user_error = err.chain().any(|e| {
        e.is::<flotilla_nn::NnError>()
            || e.is::<flotilla_data::DataError>()
            || e.is::<flotilla_experiment::UnknownDataset>()
            || e.is::<flotilla_experiment::ConfigError>()
            || e.is::<flotilla_experiment::OutputError>()
            || e.is::<flotilla_sim::DeviceError>()
            || e.is::<new_file::OutRefused>()
            || e.downcast_ref::<flotilla_experiment::ExperimentError>()
                .is_some_and(flotilla_experiment::ExperimentError::is_user_error)
    });
    if user_error { 2 } else { 1 }
}
