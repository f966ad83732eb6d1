//! `siplab-cloudpool --node CP`: the cloud pool, home of every cloud-hosted user.

use siplab_topology::Role;

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
