//! CNI spec versions and what each one allows.

use std::fmt;
use std::str::FromStr;

use super::error::{CniError, ErrorCode};

/// The versions husk's plugins and invocation library speak.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];

/// A parsed `major.minor.patch` CNI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CniVersion(pub u16, pub u16, pub u16);

impl CniVersion {
    /// 0.4.0: the oldest version with CHECK.
    pub const V0_4_0: CniVersion = CniVersion(0, 4, 0);
    /// 1.0.0.
    pub const V1_0_0: CniVersion = CniVersion(1, 0, 0);
    /// 1.1.0: adds STATUS and GC.
    pub const V1_1_0: CniVersion = CniVersion(1, 1, 0);

    /// Parse and check that the version is one husk supports; the error is the
    /// spec's code 1 (incompatible CNI version).
    pub fn supported(s: &str) -> Result<CniVersion, CniError> {
        if !SUPPORTED_VERSIONS.contains(&s) {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("cniVersion: unsupported version {s:?}"),
            )
            .with_details(format!(
                "supported versions: {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        s.parse()
            .map_err(|e: String| CniError::new(ErrorCode::IncompatibleVersion, e))
    }

    /// Whether this version has the STATUS and GC verbs.
    pub fn has_gc_status(self) -> bool {
        self >= Self::V1_1_0
    }
}

impl FromStr for CniVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("cniVersion: {s:?} is not a major.minor.patch version");
        let mut it = s.split('.');
        let mut part = || -> Result<u16, String> {
            it.next().ok_or_else(bad)?.parse::<u16>().map_err(|_| bad())
        };
        let v = CniVersion(part()?, part()?, part()?);
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let a: CniVersion = "0.4.0".parse().unwrap();
        let b: CniVersion = "1.1.0".parse().unwrap();
        assert!(a < b);
        assert!(b.has_gc_status());
        assert!(!CniVersion::V1_0_0.has_gc_status());
        assert!("1.0".parse::<CniVersion>().is_err());
        assert!("1.0.0.0".parse::<CniVersion>().is_err());
        assert!("x.0.0".parse::<CniVersion>().is_err());
    }

    #[test]
    fn rejects_unsupported_with_code_1() {
        let e = CniVersion::supported("0.3.1").unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("0.3.1"));
        assert!(CniVersion::supported("1.0.0").is_ok());
    }
}
