//! The `nearcache` binary: parses flags, loads the configuration, starts
//! logging, metrics, the admin listener and the proxy, and handles signals.

use clap::Parser;
use nearcache::config::{Config, LogFormat, Overrides};
use nearcache::{admin, observe, server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// A Redis-protocol caching proxy.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults are used.
    #[arg(long, short = 'c', env = "NEARCACHE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to accept Redis clients on (overrides server.listen).
    #[arg(long, env = "NEARCACHE_LISTEN")]
    listen: Option<String>,
    /// Upstream Redis URL, redis:// or rediss:// (TLS): [user[:password]@]host[:port][/db] (overrides upstream.url).
    #[arg(long, env = "NEARCACHE_UPSTREAM")]
    upstream: Option<String>,
    /// Address of the admin HTTP listener (overrides admin.listen).
    #[arg(long, env = "NEARCACHE_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Log format: text or json (overrides log.format).
    #[arg(long, env = "NEARCACHE_LOG_FORMAT")]
    log_format: Option<String>,
    /// Log filter, e.g. info or nearcache=debug (overrides log.level; RUST_LOG wins).
    #[arg(long, env = "NEARCACHE_LOG_LEVEL")]
    log_level: Option<String>,
    /// Threads serving clients, 0 for one per core (overrides server.worker_threads).
    #[arg(long, env = "NEARCACHE_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Validate this configuration file and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Tool>,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// Read a password from stdin (one line) and print its password_sha256
    /// for a [[tenant]].
    HashPassword,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            admin_listen: self.admin_listen.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
            worker_threads: self.worker_threads,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Tool::HashPassword) = cli.command {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            eprintln!("cannot read the password from stdin");
            return ExitCode::from(2);
        }
        println!("{}", nearcache::tenancy::hash_password(line.trim_end_matches(['\r', '\n']).as_bytes()));
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &cli.check_config {
        return match Config::load(Some(file), &cli.overrides()) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    nearcache::timer::init();
    // The control side (accepting, admin, invalidations, the breaker's
    // probes, replay); clients are served by the server's worker threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = server::ConfigSource { file: cli.config.clone(), overrides: cli.overrides() };
    match runtime.block_on(run(config, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(config: Config, source: server::ConfigSource) -> Result<(), String> {
    let metrics = observe::install();
    // Before anything listens: a SIGHUP sent once the ports answer must
    // find its handler (the default action ends the process).
    let signals = listen_for_signals();
    let admin = admin::bind(config.admin.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (admin.listen): {e}", config.admin.listen))?;
    let server = server::Server::bind(&config).await.map_err(|e| e.to_string())?;
    tracing::info!(
        listen = %config.server.listen,
        tls_listen = ?config.server.tls.as_ref().map(|t| t.listen),
        upstream = %config.upstream.url,
        cluster_seeds = ?config.cluster_seeds,
        admin = %config.admin.listen,
        workers = server.workers(),
        failover = config.failover.enabled,
        version = env!("CARGO_PKG_VERSION"),
        "nearcache started"
    );
    let state = admin::Admin::new(metrics, &server, source, config.admin.token.clone());
    let control = state.control();
    tokio::spawn(admin::serve(admin, Arc::new(state)));
    server.run(obey(signals, control)).await;
    tracing::info!("nearcache stopped");
    Ok(())
}

/// What a signal asks of the process.
enum Asked {
    /// SIGHUP: reload the configuration file.
    Reload,
    /// SIGINT or SIGTERM: stop accepting, let requests in flight finish.
    Stop,
}

/// Listens for SIGHUP, SIGINT and SIGTERM on a thread of their own rather
/// than through tokio's signal driver, which every runtime (each worker's
/// included) would check on every turn of its event loop: about 40
/// instructions per request for a lone client (`scripts/callgrind.sh`).
fn listen_for_signals() -> UnboundedReceiver<Asked> {
    let (tx, rx) = unbounded_channel();
    let signals = Signals::new([SIGHUP, SIGINT, SIGTERM]);
    let spawned = signals.and_then(|mut signals| {
        std::thread::Builder::new().name("nearcache-signals".into()).spawn(move || {
            for signal in signals.forever() {
                let asked = if signal == SIGHUP { Asked::Reload } else { Asked::Stop };
                if tx.send(asked).is_err() {
                    break;
                }
            }
        })
    });
    if let Err(e) = spawned {
        tracing::warn!(
            error = %e,
            "cannot handle signals: SIGHUP, SIGINT and SIGTERM end the process at once (reload with POST /config/reload)"
        );
    }
    rx
}

/// Does what signals ask: reloads on every SIGHUP (the outcome is logged)
/// and resolves on the first SIGINT or SIGTERM.
async fn obey(mut signals: UnboundedReceiver<Asked>, control: Arc<server::Control>) {
    loop {
        match signals.recv().await {
            Some(Asked::Reload) => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = control.reload();
            }
            Some(Asked::Stop) => break,
            // Signals are not handled (logged at startup): run until killed.
            None => std::future::pending::<()>().await,
        }
    }
    tracing::info!("shutdown signal received");
}
