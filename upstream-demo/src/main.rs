//! `upstream-demo --listen ADDR`: serves the demo shop.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A small sports-shop API with no security of its own")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("upstream-demo: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("upstream-demo: serving the shop on http://{}", args.listen);
    upstream_demo::serve(listener, upstream_demo::Shop::seeded(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    std::process::ExitCode::SUCCESS
}
