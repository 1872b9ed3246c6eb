//! husk-portmap's config and the port mappings it acts on.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::Deserialize;

use crate::types::{CniError, ErrorCode, NetConf, PortMapping};

/// Reference portmap fields husk-portmap does not implement (error code 2).
const UNSUPPORTED: &[&str] = &["externalSetMarkChain", "conditionsV4", "conditionsV6"];

/// The plugin's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct PortmapConf {
    /// Masquerade hairpin and localhost connections (default true).
    #[serde(default = "yes")]
    pub snat: bool,
    /// The mark bit used to select connections for masquerade (default 13).
    #[serde(rename = "markMasqBit", default = "default_bit")]
    pub mark_masq_bit: u32,
}

fn yes() -> bool {
    true
}

fn default_bit() -> u32 {
    13
}

/// A validated mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Node port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Only this node address.
    pub host_ip: Option<IpAddr>,
}

impl PortmapConf {
    /// Parse and validate the plugin fields and `runtimeConfig.portMappings`.
    pub fn parse(conf: &NetConf) -> Result<(PortmapConf, Vec<Mapping>), CniError> {
        for k in UNSUPPORTED {
            if conf.extra.get(*k).is_some_and(|v| !v.is_null()) {
                return Err(CniError::new(
                    ErrorCode::UnsupportedField,
                    format!("{k}: not supported by husk-portmap"),
                ));
            }
        }
        let c: PortmapConf = serde_json::from_value(serde_json::Value::Object(conf.extra.clone()))
            .map_err(|e| CniError::from_json("portmap config", &e))?;
        if c.mark_masq_bit > 31 {
            return Err(CniError::invalid_config(format!(
                "markMasqBit: {} is out of range 0-31",
                c.mark_masq_bit
            )));
        }
        let maps = validate(&conf.port_mappings()?)?;
        Ok((c, maps))
    }
}

/// Check each mapping and reject duplicates within one request.
pub fn validate(pms: &[PortMapping]) -> Result<Vec<Mapping>, CniError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, pm) in pms.iter().enumerate() {
        let f = |field: &str, why: String| {
            CniError::invalid_config(format!("runtimeConfig.portMappings[{i}].{field}: {why}"))
        };
        if pm.host_port == 0 {
            return Err(f("hostPort", "must be 1-65535".into()));
        }
        if pm.container_port == 0 {
            return Err(f("containerPort", "must be 1-65535".into()));
        }
        let protocol = pm.protocol.to_ascii_lowercase();
        if protocol != "tcp" && protocol != "udp" {
            return Err(f(
                "protocol",
                format!("{:?} is not tcp or udp", pm.protocol),
            ));
        }
        let host_ip = if pm.host_ip.is_empty() || pm.host_ip == "0.0.0.0" || pm.host_ip == "::" {
            None
        } else {
            Some(
                pm.host_ip
                    .parse::<IpAddr>()
                    .map_err(|e| f("hostIP", format!("{:?}: {e}", pm.host_ip)))?,
            )
        };
        if !seen.insert((protocol.clone(), pm.host_port, host_ip)) {
            return Err(CniError::new(
                ErrorCode::HostPortConflict,
                format!(
                    "runtimeConfig.portMappings[{i}]: {}/{} is given twice",
                    protocol, pm.host_port
                ),
            ));
        }
        out.push(Mapping {
            host_port: pm.host_port,
            container_port: pm.container_port,
            protocol,
            host_ip,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(h: u16, c: u16, p: &str, ip: &str) -> PortMapping {
        PortMapping {
            host_port: h,
            container_port: c,
            protocol: p.into(),
            host_ip: ip.into(),
        }
    }

    #[test]
    fn validates_mappings() {
        let m = validate(&[pm(8080, 80, "TCP", ""), pm(8080, 80, "udp", "10.0.0.1")]).unwrap();
        assert_eq!(m[0].protocol, "tcp");
        assert_eq!(m[1].host_ip, Some("10.0.0.1".parse().unwrap()));
        assert!(
            validate(&[pm(0, 80, "tcp", "")])
                .unwrap_err()
                .msg
                .contains("hostPort")
        );
        assert!(
            validate(&[pm(1, 80, "sctp", "")])
                .unwrap_err()
                .msg
                .contains("protocol")
        );
        assert!(
            validate(&[pm(1, 80, "tcp", "nope")])
                .unwrap_err()
                .msg
                .contains("hostIP")
        );
        let e = validate(&[pm(1, 80, "tcp", ""), pm(1, 81, "tcp", "")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::HostPortConflict as u32);
    }
}
