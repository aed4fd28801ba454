//! `herald-bench SCENARIO [flags]`: runs one scenario against a running server,
//! prints its JSON report on stdout and a short summary on stderr.

use std::process::ExitCode;

use clap::Parser;
use herald_bench::cli::{Cli, Run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Warnings (a student that failed to join, ...) on stderr; HERALD_LOG changes the level.
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.scenario.into_run())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(run: Run) -> anyhow::Result<()> {
    match run {
        Run::Messaging(a) => {
            let report = herald_bench::run(*a).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("{}", herald_bench::summary(&report));
        }
        Run::Classroom(a) => {
            let report = herald_bench::scenario::classroom::run(*a).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("{}", herald_bench::scenario::classroom::summary(&report));
        }
    }
    Ok(())
}
