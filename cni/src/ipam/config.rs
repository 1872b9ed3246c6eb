//! The `host-local` IPAM section.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::Deserialize;

use super::alloc::{Range, RangeSet};
use crate::types::{CniError, Route};

/// Where allocations live unless `dataDir` says otherwise (the reference's default).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    subnet: String,
    #[serde(rename = "rangeStart")]
    range_start: Option<IpAddr>,
    #[serde(rename = "rangeEnd")]
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
struct RawHostLocal {
    #[serde(rename = "type")]
    _type: String,
    subnet: Option<String>,
    #[serde(rename = "rangeStart")]
    range_start: Option<IpAddr>,
    #[serde(rename = "rangeEnd")]
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(rename = "dataDir")]
    data_dir: Option<PathBuf>,
}

/// A validated host-local configuration.
#[derive(Debug, Clone)]
pub struct HostLocalConfig {
    /// One address is allocated from each set.
    pub range_sets: Vec<RangeSet>,
    /// Routes returned in the result.
    pub routes: Vec<Route>,
    /// Allocation store root (the network name is appended).
    pub data_dir: PathBuf,
}

fn bad(field: &str, reason: impl std::fmt::Display) -> CniError {
    CniError::invalid_config(format!("{field}: {reason}"))
}

impl HostLocalConfig {
    /// Parse and validate `ipam` (everything is checked before anything is
    /// allocated).
    pub fn parse(ipam: &serde_json::Value) -> Result<HostLocalConfig, CniError> {
        let raw: RawHostLocal =
            serde_json::from_value(ipam.clone()).map_err(|e| CniError::from_json("ipam", &e))?;
        let parse_subnet = |field: &str, s: &str| -> Result<IpNetwork, CniError> {
            s.parse::<IpNetwork>()
                .map_err(|e| bad(field, format!("{s:?}: {e}")))
        };
        let mut range_sets = Vec::new();
        if let Some(s) = &raw.subnet {
            if !raw.ranges.is_empty() {
                return Err(bad("ipam.subnet", "give either subnet or ranges, not both"));
            }
            let subnet = parse_subnet("ipam.subnet", s)?;
            let r = Range::new(subnet, raw.range_start, raw.range_end, raw.gateway)
                .map_err(|e| bad("ipam.subnet", e))?;
            range_sets.push(RangeSet(vec![r]));
        }
        for (i, set) in raw.ranges.iter().enumerate() {
            let mut rs = Vec::new();
            for (j, r) in set.iter().enumerate() {
                let field = format!("ipam.ranges[{i}][{j}]");
                let subnet = parse_subnet(&format!("{field}.subnet"), &r.subnet)?;
                rs.push(
                    Range::new(subnet, r.range_start, r.range_end, r.gateway)
                        .map_err(|e| bad(&field, e))?,
                );
            }
            let rs = RangeSet(rs);
            rs.validate()
                .map_err(|e| bad(&format!("ipam.ranges[{i}]"), e))?;
            range_sets.push(rs);
        }
        if range_sets.is_empty() {
            return Err(bad("ipam", "needs subnet or ranges"));
        }
        for (i, a) in range_sets.iter().enumerate() {
            for b in &range_sets[i + 1..] {
                for x in &a.0 {
                    for y in &b.0 {
                        if x.subnet.contains(y.subnet.network())
                            || y.subnet.contains(x.subnet.network())
                        {
                            return Err(bad(
                                "ipam.ranges",
                                format!("subnets {} and {} overlap", x.subnet, y.subnet),
                            ));
                        }
                    }
                }
            }
        }
        Ok(HostLocalConfig {
            range_sets,
            routes: raw.routes,
            data_dir: raw
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subnet_form() {
        let c = HostLocalConfig::parse(&json!({"type":"host-local","subnet":"10.22.0.0/16",
            "rangeStart":"10.22.1.10","rangeEnd":"10.22.1.20","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"/tmp/x"}))
        .unwrap();
        assert_eq!(c.range_sets.len(), 1);
        assert_eq!(c.range_sets[0].0[0].start.to_string(), "10.22.1.10");
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn ranges_form_dual_stack() {
        let c = HostLocalConfig::parse(&json!({"type":"host-local","ranges":[
            [{"subnet":"10.22.0.0/24"}],[{"subnet":"fd00::/64","gateway":"fd00::1"}]]}))
        .unwrap();
        assert_eq!(c.range_sets.len(), 2);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn errors_name_the_field() {
        let e = HostLocalConfig::parse(&json!({"type":"host-local","subnet":"10.22.0.0/33"}))
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("ipam.subnet"), "{}", e.msg);
        let e = HostLocalConfig::parse(&json!({"type":"host-local"})).unwrap_err();
        assert!(e.msg.contains("subnet or ranges"));
        let e =
            HostLocalConfig::parse(&json!({"type":"host-local","ranges":[[{"subnet":"nope"}]]}))
                .unwrap_err();
        assert!(e.msg.contains("ipam.ranges[0][0].subnet"), "{}", e.msg);
        let e = HostLocalConfig::parse(
            &json!({"type":"host-local","subnet":"10.0.0.0/24","rangeStart":"10.9.0.1"}),
        )
        .unwrap_err();
        assert!(e.msg.contains("rangeStart"));
        let e = HostLocalConfig::parse(&json!({"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/16"}]]})).unwrap_err();
        assert!(e.msg.contains("overlap"));
    }
}
