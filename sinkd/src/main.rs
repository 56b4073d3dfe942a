use std::process::ExitCode;

use clap::Parser;
use sinkd::{Args, Config};

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sinkd: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SINKD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sinkd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match sinkd::start(config.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sinkd: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let limit = config.rate.map_or("no limit".to_string(), |r| {
            format!("{r} writes/s, burst {}", config.burst)
        });
        tracing::info!(
            "listening on {} ({limit}, on-limit {:?})",
            running.url(),
            config.on_limit
        );
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let stats = running.shutdown().await;
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).unwrap_or_default()
        );
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
