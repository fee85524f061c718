//! `temper serve`: the OpenAI-compatible server (temper-server) with the CLI's model names,
//! RAG store and eval reports.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use temper_engine::LoadOptions;
use temper_models::DEFAULT_CHAT_MODEL;
use temper_server::{ApiKeys, PoolOptions, Server, ServerConfig};

use crate::options::resolver;
use crate::output::{block_on, notice};

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// The address to listen on; anything but loopback needs an API key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A key clients must send as `Authorization: Bearer KEY` (repeatable; TEMPER_API_KEY may
    /// hold several, comma-separated).
    #[arg(long = "api-key", env = "TEMPER_API_KEY", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Models to load before the server reports ready (repeatable) [default: the default chat
    /// model]; any other model the CLI can use is loaded on its first request.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Answers a local model decodes together in one batch; more wait in its queue.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Requests per model running or waiting before new ones get a 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Context window of local models in tokens (default: the trained context, at most 4096).
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<usize>,
    /// Threads for inference (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Unload a model after this many seconds without a request.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub idle_unload: u64,
    /// Models kept loaded at once.
    #[arg(long, default_value_t = 3)]
    pub max_loaded: usize,
    /// Seconds running answers get to finish after Ctrl-C or SIGTERM.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub grace: u64,
    /// The RAG store of /api/rag, a file or a postgres:// URL (default: the one `temper rag` uses).
    #[arg(long, value_name = "PATH|URL", env = "TEMPER_RAG_DB")]
    pub rag_db: Option<String>,
    /// Uploaded files larger than this many bytes are refused.
    #[arg(long, default_value_t = temper_rag::LoadOptions::default().max_file_bytes, value_name = "BYTES")]
    pub max_file_bytes: u64,
    /// The folder of the HTML reports `temper eval run --html` wrote, served under /api/eval.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub reports: PathBuf,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.parallel >= 1, "--parallel must be at least 1");
    anyhow::ensure!(
        args.queue >= args.parallel,
        "--queue ({}) must be at least --parallel ({})",
        args.queue,
        args.parallel
    );
    anyhow::ensure!(args.max_loaded >= 1, "--max-loaded must be at least 1");
    anyhow::ensure!(args.reports.is_dir(), "--reports {} is not a folder", args.reports.display());
    let models = if args.models.is_empty() { vec![DEFAULT_CHAT_MODEL.to_owned()] } else { args.models };
    let config = ServerConfig {
        host: args.host,
        port: args.port,
        api_keys: ApiKeys::new(args.api_keys),
        pool: PoolOptions {
            load: LoadOptions {
                threads: args.threads,
                context_window: args.ctx,
                sequences: Some(args.parallel),
            },
            queue_limit: args.queue,
            idle_unload: Duration::from_secs(args.idle_unload),
            max_loaded: args.max_loaded,
        },
        preload: models,
        grace: Duration::from_secs(args.grace),
        header_timeout: Duration::from_secs(30),
        rag_db: crate::rag::store_location(args.rag_db)?,
        rag_max_file_bytes: args.max_file_bytes,
        reports: args.reports,
    };
    init_logging();
    block_on(async {
        let server = Server::bind(config, resolver()?).await?;
        // The one line a script waits for: it names the port when --port 0 picked it.
        notice(&format!("temper serve: listening on http://{}", server.local_addr()));
        server.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// One line per request on stderr; `RUST_LOG` chooses what (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
