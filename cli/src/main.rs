//! `proxyCli`: the rfaas command line. It brings the platform up and down, deploys functions
//! and shows what runs. Each command lives in its own module under `commands/`.

mod builder;
mod commands;
mod dns;
mod functions;
mod gateway;
mod handler_check;
mod images;
mod instance;
mod paths;
mod platform;
mod progress;
mod settings;
mod shape;
mod swarm;

use rfaas_cli::{deploy_file, limits, normal};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// rfaas: functions as a service on one machine with Docker.
#[derive(Debug, Parser)]
#[command(name = "proxyCli", version, about, propagate_version = true)]
struct Cli {
    /// Run an isolated platform beside others: its objects get this suffix and label (every
    /// command but `new`).
    #[arg(long, global = true, env = "RFAAS_INSTANCE")]
    instance: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build what is missing and start NATS, the store and the gateway.
    #[command(name = "startFaas", alias = "start-faas")]
    StartFaas(commands::start_faas::Args),
    /// Stop and remove the platform's containers and network.
    #[command(name = "stopFaas", alias = "stop-faas")]
    StopFaas(commands::stop_faas::Args),
    /// Check, build and (re)start the functions of a deploy file.
    Deploy(commands::deploy::Args),
    /// List the deployed functions.
    Details(commands::details::Args),
    /// Remove functions (containers and routes).
    Stop(commands::stop::Args),
    /// Deploy, then watch the functions' crates and deploy again on every save (Ctrl-C stops).
    Dev(commands::deploy::Args),
    /// Run the version the last deploy replaced again (zero downtime, like a deploy).
    Rollback(commands::rollback::Args),
    /// Set a function's replica count now (0 stops it until its next call).
    Scale(commands::scale::Args),
    /// Show a function's logs.
    Logs(commands::logs::Args),
    /// List rfaas images and this instance's containers.
    List,
    /// Scaffold a function crate that deploys as it is (on disk only: no platform instance).
    New(commands::new::Args),
    /// Look at and change the document store's data.
    Store(commands::store::Args),
}

/// Parses the command line. `--instance` is global, but `new` works on no instance: its help
/// does not offer the flag (it has a hidden one of its own, which stops clap from adding the
/// global one), and giving it, before or after `new`, is an error. `RFAAS_INSTANCE` in the
/// environment is fine: it is meant for the other commands.
fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    if let Some(("new", sub)) = matches.subcommand() {
        let given =
            |m: &clap::ArgMatches| m.value_source("instance") == Some(ValueSource::CommandLine);
        if given(&matches) || given(sub) {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "`new` makes a crate on disk and works on no platform instance: drop \
                     --instance (give it to `deploy` instead)",
                )
                .exit();
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> std::process::ExitCode {
    let cli = parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let instance = instance::Instance::new(cli.instance)?;
    match cli.command {
        Command::StartFaas(args) => commands::start_faas::run(&instance, args).await,
        Command::StopFaas(args) => commands::stop_faas::run(&instance, args).await,
        Command::Deploy(args) => commands::deploy::run(&instance, args).await,
        Command::Dev(args) => commands::dev::run(&instance, args).await,
        Command::Details(args) => commands::details::run(&instance, args).await,
        Command::Stop(args) => commands::stop::run(&instance, args).await,
        Command::Scale(args) => commands::scale::run(&instance, args).await,
        Command::Rollback(args) => commands::rollback::run(&instance, args).await,
        Command::Logs(args) => commands::logs::run(&instance, args).await,
        Command::List => commands::list::run(&instance).await,
        Command::New(args) => commands::new::run(args),
        Command::Store(args) => commands::store::run(&instance, args).await,
    }
}
