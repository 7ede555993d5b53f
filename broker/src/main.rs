//! The `ringcast` command: parses arguments, loads the config, starts the server. No logic.

use std::net::IpAddr;
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
        /// Address to listen on (as `server.host`; wins over the file and the environment).
        #[arg(long)]
        host: Option<IpAddr>,
        /// Port to listen on (as `server.port`; wins over the file and the environment).
        #[arg(long)]
        port: Option<u16>,
        /// Serve the demo app's published credentials on a non-loopback `--host` too.
        #[arg(long)]
        allow_demo_credentials: bool,
    },
    /// Read a password on standard input and print its argon2 hash, for `[[admins]]`.
    HashPassword,
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
    let command = cli.command.unwrap_or(Command::Serve {
        config: None,
        host: None,
        port: None,
        allow_demo_credentials: false,
    });
    match command {
        Command::CheckConfig { config } => {
            let loaded = Config::load(config.as_deref(), &env)?;
            println!("config ok: {} app(s)", loaded.apps.len());
            Ok(())
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on standard input");
            println!("{}", ringcast::core::admin::hash_password(password));
            Ok(())
        }
        Command::Serve {
            config,
            host,
            port,
            allow_demo_credentials,
        } => {
            // The flags are the variables that win over every other source.
            let flags = [
                ("RINGCAST_HOST", host.map(|h| h.to_string())),
                ("RINGCAST_PORT", port.map(|p| p.to_string())),
                (
                    "RINGCAST_ALLOW_DEMO_CREDENTIALS",
                    allow_demo_credentials.then(|| "true".to_owned()),
                ),
            ];
            let env = |name: &str| {
                flags
                    .iter()
                    .find(|(flag, value)| *flag == name && value.is_some())
                    .and_then(|(_, value)| value.clone())
                    .or_else(|| env(name))
            };
            let demo = config.is_none();
            let mut loaded = Config::load(config.as_deref(), &env)?;
            for warning in loaded.warnings() {
                tracing::warn!("{warning}");
            }
            if demo && loaded.admins.is_empty() {
                // The embedded demo gets a dashboard admin with a password made up now.
                let password = ringcast::core::admin::random_password();
                loaded.admins.push(ringcast::core::admin::AdminAccount {
                    name: "admin".into(),
                    password_hash: ringcast::core::admin::hash_password(&password),
                });
                println!(
                    "ringcast: admin dashboard at /admin/ (for local use only): name=admin password={password}"
                );
            }
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
