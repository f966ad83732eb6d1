//! Via chains in the spec's terms: a sent-by address named back as an interface (`E1x`)
//! or a client placement (`A1e`), and the chain a receiver should see for a path.

use siplab_topology::{Hop, Lab, Path};

/// Names a Via host: an interface, a client placement, or the host itself when neither.
pub fn name_of(lab: &Lab, host: &str) -> String {
    lab.name_of_host(host).unwrap_or_else(|| host.to_owned())
}

/// The Vias the receiver of `path` sees, top first: the path without its receiver, reversed.
pub fn expected_vias(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = path.hops[..path.hops.len().saturating_sub(1)]
        .iter()
        .map(|h| match h {
            Hop::Client(p) => p.to_string(),
            Hop::Interface(i) => i.to_string(),
        })
        .collect();
    names.reverse();
    names
}
