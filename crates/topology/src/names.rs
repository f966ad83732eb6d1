//! The names the spec gives things: nodes, interfaces, and where a client sits.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A name that is only ever compared and printed; its own type keeps a node from being
/// passed where an interface is meant.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(name: impl Into<String>) -> $name {
                $name(name.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type! {
    /// A node's short name as the spec's tables use it: `R1`, `E1`, `CE`, `CP1`, `DNS`.
    NodeName
}

name_type! {
    /// An interface's short name as the path tables use it: `R1`, `E1i`, `E1x`, `CEi`.
    /// A Via names the interface a request left from, so this is what a hop of a path is.
    InterfaceName
}

impl InterfaceName {
    /// The same interface at the other company (`E1x` <-> `E2x`; `CEi` stays): the spec's
    /// mirror rows swap companies 1 and 2.
    pub fn mirror(&self) -> InterfaceName {
        let swapped = self
            .0
            .chars()
            .map(|c| match c {
                '1' => '2',
                '2' => '1',
                c => c,
            })
            .collect();
        InterfaceName(swapped)
    }
}

/// Where a user is homed (section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum UserClass {
    /// On-premises, on its domain's front end.
    A,
    /// In the cloud pool: its front end redirects it there.
    B,
}

impl fmt::Display for UserClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UserClass::A => "A",
            UserClass::B => "B",
        })
    }
}

/// Which side of its company's edge a client sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum At {
    /// In the company LAN (the spec's `i`).
    Internal,
    /// On the internet (the spec's `e`).
    External,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            At::Internal => "internal",
            At::External => "external",
        })
    }
}

impl std::str::FromStr for At {
    type Err = String;

    /// `internal` or `external`, as the programs' `--at` takes it.
    fn from_str(s: &str) -> Result<At, String> {
        match s {
            "internal" => Ok(At::Internal),
            "external" => Ok(At::External),
            other => Err(format!("{other:?} is neither internal nor external")),
        }
    }
}

/// A client placement in the spec's notation, e.g. `A1e`: user class, company, and `i` (LAN)
/// or `e` (internet). The name carries all three, so they are parsed from it rather than
/// written beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Placement {
    pub class: UserClass,
    pub company: u8,
    pub at: At,
}

impl Placement {
    /// The placement with companies 1 and 2 swapped, for the spec's mirror rows.
    pub fn mirror(self) -> Placement {
        let company = match self.company {
            1 => 2,
            2 => 1,
            other => other,
        };
        Placement { company, ..self }
    }
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(text: &str) -> Result<Placement, String> {
        let bad = || format!("{text:?} is not a placement like A1i or B2e");
        let mut chars = text.chars();
        let class = match chars.next() {
            Some('A') => UserClass::A,
            Some('B') => UserClass::B,
            _ => return Err(bad()),
        };
        let company = chars
            .next()
            .and_then(|c| c.to_digit(10))
            .and_then(|d| u8::try_from(d).ok())
            .filter(|&d| d > 0)
            .ok_or_else(bad)?;
        let at = match chars.next() {
            Some('i') => At::Internal,
            Some('e') => At::External,
            _ => return Err(bad()),
        };
        if chars.next().is_some() {
            return Err(bad());
        }
        Ok(Placement { class, company, at })
    }
}

impl TryFrom<String> for Placement {
    type Error = String;

    fn try_from(text: String) -> Result<Placement, String> {
        text.parse()
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = match self.at {
            At::Internal => 'i',
            At::External => 'e',
        };
        write!(f, "{}{}{}", self.class, self.company, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_round_trip() {
        let p: Placement = "B2e".parse().unwrap();
        assert_eq!(p.class, UserClass::B);
        assert_eq!(p.company, 2);
        assert_eq!(p.at, At::External);
        assert_eq!(p.to_string(), "B2e");
        assert_eq!(p.mirror().to_string(), "B1e");
        for bad in ["", "A1", "C1i", "A0i", "A1x", "A1ii", "E1x"] {
            assert!(bad.parse::<Placement>().is_err(), "{bad}");
        }
    }

    #[test]
    fn interfaces_mirror() {
        assert_eq!(InterfaceName::new("E1x").mirror(), "E2x");
        assert_eq!(InterfaceName::new("R2").mirror(), "R1");
        assert_eq!(InterfaceName::new("CEi").mirror(), "CEi");
    }
}
