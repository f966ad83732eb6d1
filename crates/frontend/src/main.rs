//! `siplab-frontend --node R1`: a company's front end (registrar and home server).

use siplab_topology::Role;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    siplab_node::server_main(
        env!("CARGO_BIN_NAME"),
        "siplab front end: registrar and home server of on-premises users",
        &[Role::Frontend],
    )
    .await?;
    Ok(())
}
