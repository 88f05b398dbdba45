//! `calls-test-job`: the tiny job the offloader end-to-end tests run in a container; see
//! `calls_e2e::test_job` for its behaviours.

use calls_e2e::test_job::{run, TestJobConfig};

fn main() {
    let code = match TestJobConfig::from_env(calls_job::settings::process_lookup()) {
        Err(err) => {
            eprintln!("calls-test-job: invalid settings: {err:#}");
            2
        }
        Ok(config) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Err(err) => {
                eprintln!("calls-test-job: cannot start the runtime: {err}");
                3
            }
            Ok(runtime) => runtime.block_on(run(config)).unwrap_or_else(|err| {
                eprintln!("calls-test-job: error: {err:#}");
                4
            }),
        },
    };
    std::process::exit(code);
}
