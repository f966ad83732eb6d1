//! `siplab-edge --node E1`: a company's edge (clients on the internet, federation).

use siplab_topology::Role;

/// mimalloc, chosen by the program rather than a library it links: glibc's malloc and free
/// were 7 % of a front end's CPU while relaying, and connections and bindings take less
/// memory with mimalloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
