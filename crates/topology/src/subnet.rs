//! IPv4 ranges in CIDR notation, as lab.toml writes them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Deserialize;

/// An IPv4 network such as `10.10.1.0/24`; the base address has no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Subnet {
    base: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The network's /24 whose third octet is `third`: the single-process profile's range for
    /// a test slot, taken from the slot-0 loopback range.
    pub fn with_third_octet(&self, third: u8) -> Subnet {
        let [a, b, _, _] = self.base.octets();
        Subnet {
            base: Ipv4Addr::new(a, b, third, 0),
            prefix: 24,
        }
    }

    pub fn base(&self) -> Ipv4Addr {
        self.base
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.base)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(text: &str) -> Result<Subnet, String> {
        let not_cidr = || format!("{text:?} is not an IPv4 network like 10.10.1.0/24");
        let (base, prefix) = text.split_once('/').ok_or_else(not_cidr)?;
        let base: Ipv4Addr = base.parse().map_err(|_| not_cidr())?;
        let prefix: u8 = prefix.parse().map_err(|_| not_cidr())?;
        if prefix > 32 {
            return Err(not_cidr());
        }
        if u32::from(base) & !mask(prefix) != 0 {
            return Err(format!("{text:?} has host bits set"));
        }
        Ok(Subnet { base, prefix })
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;

    fn try_from(text: String) -> Result<Subnet, String> {
        text.parse()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_contains() {
        let net: Subnet = "10.10.1.0/24".parse().unwrap();
        assert!(net.contains(Ipv4Addr::new(10, 10, 1, 200)));
        assert!(!net.contains(Ipv4Addr::new(10, 10, 2, 1)));
        assert_eq!(net.to_string(), "10.10.1.0/24");
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(203, 0, 113, 9)));
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        assert!(
            "10.10.1.5/24"
                .parse::<Subnet>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!("10.10.1.0".parse::<Subnet>().is_err());
        assert!("10.10.1.0/33".parse::<Subnet>().is_err());
    }

    #[test]
    fn slot_ranges() {
        let lo: Subnet = "127.1.0.0/24".parse().unwrap();
        assert_eq!(lo.with_third_octet(7).to_string(), "127.1.7.0/24");
    }
}
