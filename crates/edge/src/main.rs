//! `siplab-edge --node E1`: a company's edge (clients on the internet, federation).

use siplab_topology::Role;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    siplab_node::server_main(
        env!("CARGO_BIN_NAME"),
        "siplab edge: clients on the internet and federation, in front of the front end (E1, E2) or the cloud pool (CE)",
        &[Role::Edge, Role::CloudEdge],
    )
    .await?;
    Ok(())
}
