//! The ADD result (spec 1.0.0 layout; 0.4.0 on output when asked).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::version::CniVersion;

/// A plugin's ADD result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// The version the result is written in.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Interfaces the plugin created or touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes set inside the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings for the container.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container-side interfaces; absent for host ones.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length (`10.22.0.5/24`).
    pub address: IpNetwork,
    /// Default gateway for this subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in a result or IPAM config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network.
    pub dst: IpNetwork,
    /// Next hop; the default gateway when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Route priority (metric) (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl CniResult {
    /// Addresses of the interface placed in `sandbox`-having interfaces
    /// (the container side), or all addresses when none names an interface.
    pub fn container_ips(&self) -> Vec<&IpConfig> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|itf| !itf.sandbox.is_empty()),
                None => true,
            })
            .collect()
    }

    /// The result as JSON in the layout of `version` (0.4.0 adds a
    /// `version` field to each IP; 1.x is the native layout).
    pub fn to_json_for(&self, version: CniVersion) -> serde_json::Value {
        let mut r = self.clone();
        r.cni_version = version.to_string();
        let mut v = serde_json::to_value(&r).unwrap_or(serde_json::Value::Null);
        if version < CniVersion::V1_0_0 {
            if let Some(ips) = v.get_mut("ips").and_then(|i| i.as_array_mut()) {
                for (ip, cfg) in ips.iter_mut().zip(&r.ips) {
                    let fam = if cfg.address.is_ipv4() { "4" } else { "6" };
                    if let Some(o) = ip.as_object_mut() {
                        o.insert("version".into(), fam.into());
                    }
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "cniVersion": "1.0.0",
      "interfaces": [
        {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
        {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p"}
      ],
      "ips": [{"address": "10.22.0.5/24", "gateway": "10.22.0.1", "interface": 2}],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dns": {"nameservers": ["10.0.0.10"]}
    }"#;

    #[test]
    fn round_trips_1_0_0() {
        let r: CniResult = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.22.0.5/24");
        assert_eq!(r.container_ips().len(), 1);
        let again: CniResult = serde_json::from_value(r.to_json_for(CniVersion::V1_0_0)).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn converts_to_0_4_0() {
        let r: CniResult = serde_json::from_str(SAMPLE).unwrap();
        let v = r.to_json_for(CniVersion::V0_4_0);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        // And a 0.4.0 result parses back (the extra field is ignored).
        let back: CniResult = serde_json::from_value(v).unwrap();
        assert_eq!(back.ips, r.ips);
    }

    #[test]
    fn rejects_bad_address() {
        let bad = SAMPLE.replace("10.22.0.5/24", "10.22.0.5/40");
        assert!(serde_json::from_str::<CniResult>(&bad).is_err());
    }
}
