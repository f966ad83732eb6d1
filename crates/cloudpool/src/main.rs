//! `siplab-cloudpool --node CP1`: a cloud pool server, home of some of the cloud-hosted users.

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
        "siplab cloud pool: registrar and home server of every hosted user of every tenant",
        &[Role::CloudPool],
    )
    .await?;
    Ok(())
}
