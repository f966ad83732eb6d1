//! `siplab-edge --node E1`: a company's edge (clients on the internet, federation).

use clap::Parser;
use siplab_topology::Role;

#[derive(Parser)]
#[command(
    version,
    about = "siplab edge: clients on the internet and federation, in front of the front end (E1, E2) or the cloud pool (CE)"
)]
struct Cli {
    #[command(flatten)]
    server: siplab_node::ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    siplab_node::init_tracing();
    siplab_node::serve(Cli::parse().server, &[Role::Edge, Role::CloudEdge]).await?;
    Ok(())
}
