//! `siplab-frontend --node R1`: a company's front end (registrar and home server).

use clap::Parser;
use siplab_topology::Role;

#[derive(Parser)]
#[command(
    version,
    about = "siplab front end: registrar and home server of on-premises users"
)]
struct Cli {
    #[command(flatten)]
    server: siplab_node::ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    siplab_node::init_tracing();
    siplab_node::serve(Cli::parse().server, &[Role::Frontend]).await?;
    Ok(())
}
