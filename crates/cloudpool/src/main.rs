//! `siplab-cloudpool --node CP`: the cloud pool, home of every cloud-hosted user.

use clap::Parser;
use siplab_topology::Role;

#[derive(Parser)]
#[command(
    version,
    about = "siplab cloud pool: registrar and home server of every hosted user of every tenant"
)]
struct Cli {
    #[command(flatten)]
    server: siplab_node::ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    siplab_node::init_tracing();
    siplab_node::serve(Cli::parse().server, &[Role::CloudPool]).await?;
    Ok(())
}
