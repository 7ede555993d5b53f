//! The `ringcast` command: parses arguments, loads the config, starts the server. No logic.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringcast::config::Config;
use ringcast::shell::Server;

#[cfg(feature = "count-allocations")]
#[global_allocator]
static ALLOCATOR: ringcast::metrics::CountingAllocator = ringcast::metrics::CountingAllocator;

#[derive(Parser)]
#[command(
    name = "ringcast",
    version,
    about = "A Pusher-protocol-7 WebSocket broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve {
        /// TOML config file; without one, an embedded demo config is used.
        #[arg(long, short, env = "RINGCAST_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load and validate a config file, then exit.
    CheckConfig {
        /// TOML config file.
        #[arg(long, short, env = "RINGCAST_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ringcast: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::CheckConfig { config } => {
            let loaded = Config::load(config.as_deref(), &env)?;
            println!("config ok: {} app(s)", loaded.apps.len());
            Ok(())
        }
        Command::Serve { config } => {
            let loaded = Config::load(config.as_deref(), &env)?;
            for app in &loaded.apps {
                if loaded.is_demo_app(app) {
                    println!(
                        "ringcast: demo app (for local use only): app_id={} key={} secret={}",
                        app.id, app.key, app.secret
                    );
                }
            }
            std::fs::create_dir_all(&loaded.server.data_dir).with_context(|| {
                format!(
                    "cannot create data_dir {}",
                    loaded.server.data_dir.display()
                )
            })?;
            let server = Server::start(loaded)?;
            // Tests and scripts wait for this exact line.
            println!("ringcast: listening on {}", server.local_addr());
            server.run_until_signal();
            Ok(())
        }
    }
}
