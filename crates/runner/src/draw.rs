//! Pictures of what the wire showed: a [`Ladder`] as SVG (with its reasons in a column
//! beside the arrows) and as a Mermaid `sequenceDiagram`, and the lab's topology as SVG
//! (networks as bands, each node's interfaces with their addresses and names). Each SVG
//! element says what it shows in `data-` attributes, so that a test can read it back.

use std::fmt::Write;

use siplab_topology::Lab;

use crate::ladder::Ladder;

const LANE: f64 = 118.0;
const LEFT: f64 = 24.0;
const HEAD: f64 = 56.0;
const STEP: f64 = 40.0;
const REASONS: f64 = 760.0;

/// Text for XML: `<`, `>`, `&` and quotes escaped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A ladder as a self-contained SVG.
pub fn ladder_svg(ladder: &Ladder) -> String {
    let x = |name: &str| {
        let i = ladder.lifelines.iter().position(|l| l == name).unwrap_or(0);
        LEFT + LANE / 2.0 + i as f64 * LANE
    };
    let lanes_w = LEFT * 2.0 + LANE * ladder.lifelines.len() as f64;
    let width = lanes_w + REASONS;
    let bottom = HEAD + STEP * (ladder.arrows.len() as f64 + 0.5);
    let mut s = String::with_capacity(4096 + 600 * ladder.arrows.len());
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="ladder" data-call-id="{}" width="{width:.0}" height="{:.0}" viewBox="0 0 {width:.0} {:.0}" font-family="sans-serif" font-size="12">"#,
        esc(&ladder.call_id),
        bottom + 12.0,
        bottom + 12.0
    );
    s.push_str(r##"<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>"##);
    let _ = write!(
        s,
        r#"<rect width="{width:.0}" height="{:.0}" fill="white"/>"#,
        bottom + 12.0
    );
    if !ladder.title.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="16" font-size="14" font-weight="bold">{}</text>"#,
            esc(&ladder.title)
        );
    }
    for name in &ladder.lifelines {
        let cx = x(name);
        let _ = write!(
            s,
            r##"<g class="lifeline" data-name="{n}"><rect x="{:.0}" y="26" width="{:.0}" height="22" rx="4" fill="#e8eef7" stroke="#5a7bb5"/><text x="{cx:.0}" y="41" text-anchor="middle" font-weight="bold">{n}</text><line x1="{cx:.0}" y1="48" x2="{cx:.0}" y2="{bottom:.0}" stroke="#9aa8c0" stroke-dasharray="4 3"/></g>"##,
            cx - LANE / 2.0 + 8.0,
            LANE - 16.0,
            n = esc(name)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.0}" y="41" font-weight="bold" fill="#333">why this hop (the sending node's reason)</text>"##,
        lanes_w + 8.0
    );
    for (i, a) in ladder.arrows.iter().enumerate() {
        let y = HEAD + STEP * (i as f64 + 0.75);
        let (x1, x2) = (x(&a.from), x(&a.to));
        let (kind, colour, dash) = match a.request {
            true => ("request", "#1f4e9c", ""),
            false => ("response", "#2c7a3f", r#" stroke-dasharray="6 3""#),
        };
        let reason = a.reason.as_deref().unwrap_or("");
        let _ = write!(
            s,
            r#"<g class="arrow {kind}" data-from="{}" data-to="{}" data-label="{}" data-reason="{}" data-wire="{}"><title>{} ({:.1} ms, mutual TLS)</title>"#,
            esc(&a.from),
            esc(&a.to),
            esc(&a.label),
            esc(reason),
            esc(&a.wire),
            esc(&a.wire),
            a.at_ms
        );
        let _ = write!(
            s,
            r#"<line x1="{x1:.0}" y1="{y:.0}" x2="{x2:.0}" y2="{y:.0}" stroke="{colour}" stroke-width="1.6"{dash} marker-end="url(#head)"/>"#
        );
        let _ = write!(
            s,
            r##"<text x="{:.0}" y="{:.0}" text-anchor="middle" fill="{colour}">{} <tspan font-size="9" fill="#777">TLS</tspan></text>"##,
            (x1 + x2) / 2.0,
            y - 5.0,
            esc(&a.label)
        );
        if !reason.is_empty() {
            let _ = write!(
                s,
                r##"<text x="{:.0}" y="{:.0}" fill="#444" font-size="11"><tspan font-weight="bold">{}:</tspan> {}</text>"##,
                lanes_w + 8.0,
                y + 4.0,
                esc(&a.from),
                esc(reason)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// A ladder as Mermaid text, for pasting into documentation.
pub fn mermaid(ladder: &Ladder) -> String {
    // `;` and `#` mean something to Mermaid inside a message or note.
    let plain = |t: &str| t.replace([';', '#'], ",");
    let mut s = String::from("sequenceDiagram\n");
    if !ladder.title.is_empty() {
        let _ = writeln!(s, "    title {}", plain(&ladder.title));
    }
    for name in &ladder.lifelines {
        let _ = writeln!(s, "    participant {name}");
    }
    for a in &ladder.arrows {
        let arrow = if a.request { "->>" } else { "-->>" };
        let _ = writeln!(s, "    {}{arrow}{}: {}", a.from, a.to, plain(&a.label));
        if let Some(reason) = &a.reason {
            let _ = writeln!(s, "    Note right of {}: {}", a.from, plain(reason));
        }
    }
    s
}

/// The lab as SVG: one band per network, each interface in it as a box naming its node,
/// addresses and FQDNs, and the client placements on it.
pub fn topology_svg(lab: &Lab) -> String {
    const BAND: f64 = 92.0;
    const BOX_W: f64 = 178.0;
    let widest = lab
        .networks()
        .iter()
        .map(|n| {
            let ifaces = lab
                .interfaces()
                .iter()
                .filter(|i| i.network == n.name)
                .count();
            let places = lab
                .placements()
                .iter()
                .filter(|p| p.network == n.name)
                .count();
            ifaces + places
        })
        .max()
        .unwrap_or(1);
    let width = 190.0 + BOX_W * widest as f64;
    let height = BAND * lab.networks().len() as f64 + 10.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    for (row, net) in lab.networks().iter().enumerate() {
        let y = 5.0 + BAND * row as f64;
        let fill = if row % 2 == 0 { "#f3f6fb" } else { "#fbf8f1" };
        let _ = write!(
            s,
            r##"<g class="network" data-name="{n}"><rect x="0" y="{y:.0}" width="{width:.0}" height="{:.0}" fill="{fill}" stroke="#ccd"/><text x="8" y="{:.0}" font-weight="bold">{n}</text><text x="8" y="{:.0}" fill="#666">{}</text></g>"##,
            BAND - 6.0,
            y + 20.0,
            y + 36.0,
            esc(&net.subnet.to_string()),
            n = esc(&net.name)
        );
        let mut col = 0.0;
        for i in lab.interfaces().iter().filter(|i| i.network == net.name) {
            let bx = 180.0 + BOX_W * col;
            col += 1.0;
            let role = lab
                .node(i.node.as_str())
                .map(|n| n.role.to_string())
                .unwrap_or_default();
            let _ = write!(
                s,
                r##"<g class="interface" data-name="{name}" data-node="{node}"><rect x="{bx:.0}" y="{:.0}" width="{:.0}" height="{:.0}" rx="5" fill="white" stroke="#5a7bb5"/><text x="{:.0}" y="{:.0}" font-weight="bold">{name} <tspan font-weight="normal" fill="#555">{node} ({})</tspan></text><text x="{:.0}" y="{:.0}">{}</text><text x="{:.0}" y="{:.0}" fill="#555">{}</text></g>"##,
                y + 8.0,
                BOX_W - 10.0,
                BAND - 22.0,
                bx + 6.0,
                y + 24.0,
                esc(&role),
                bx + 6.0,
                y + 40.0,
                i.address,
                bx + 6.0,
                y + 56.0,
                esc(i.fqdns.first().map_or("", String::as_str)),
                name = esc(i.name.as_str()),
                node = esc(i.node.as_str())
            );
        }
        for p in lab.placements().iter().filter(|p| p.network == net.name) {
            let bx = 180.0 + BOX_W * col;
            col += 1.0;
            let nat = p.nat.map(|n| format!("NAT {n}")).unwrap_or_default();
            let _ = write!(
                s,
                r##"<g class="placement" data-name="{name}"><rect x="{bx:.0}" y="{:.0}" width="{:.0}" height="{:.0}" rx="12" fill="#fff8e6" stroke="#c59a2e"/><text x="{:.0}" y="{:.0}" font-weight="bold">{name} <tspan font-weight="normal" fill="#555">clients</tspan></text><text x="{:.0}" y="{:.0}">{}</text><text x="{:.0}" y="{:.0}" fill="#555">{nat}</text></g>"##,
                y + 8.0,
                BOX_W - 10.0,
                BAND - 22.0,
                bx + 6.0,
                y + 24.0,
                bx + 6.0,
                y + 40.0,
                p.address,
                bx + 6.0,
                y + 56.0,
                name = esc(&p.name.to_string())
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::Arrow;

    fn ladder() -> Ladder {
        let arrow =
            |from: &str, to: &str, label: &str, request: bool, reason: Option<&str>| Arrow {
                from: from.into(),
                to: to.into(),
                label: label.into(),
                request,
                wire: "127.0.0.1:1 -> 127.0.0.2:2".into(),
                reason: reason.map(Into::into),
                at_ms: 1.0,
            };
        Ladder {
            title: "Row 1 <A1i>".into(),
            call_id: "c1".into(),
            lifelines: vec!["A1i".into(), "R1".into()],
            arrows: vec![
                arrow("A1i", "R1", "MESSAGE", true, None),
                arrow(
                    "R1",
                    "A1i",
                    "200 OK",
                    false,
                    Some("alice@contoso.test: a; b #1"),
                ),
            ],
        }
    }

    #[test]
    fn a_ladder_svg_carries_each_arrow_and_escapes_text() {
        let svg = ladder_svg(&ladder());
        assert_eq!(svg.matches(r#"class="arrow request""#).count(), 1);
        assert_eq!(svg.matches(r#"class="arrow response""#).count(), 1);
        assert!(svg.contains("Row 1 &lt;A1i&gt;"));
        assert!(svg.contains(r#"data-reason="alice@contoso.test: a; b #1""#));
    }

    #[test]
    fn mermaid_has_participants_messages_and_notes() {
        let text = mermaid(&ladder());
        assert_eq!(
            text,
            "sequenceDiagram\n    title Row 1 <A1i>\n    participant A1i\n    participant R1\n    A1i->>R1: MESSAGE\n    R1-->>A1i: 200 OK\n    Note right of R1: alice@contoso.test: a, b ,1\n"
        );
    }

    #[test]
    fn the_topology_has_a_band_per_network_and_every_interface() {
        let lab = Lab::reference().unwrap();
        let svg = topology_svg(&lab);
        assert_eq!(
            svg.matches(r#"class="network""#).count(),
            lab.networks().len()
        );
        assert_eq!(
            svg.matches(r#"class="interface""#).count(),
            lab.interfaces().len()
        );
    }
}
