//! husk-bridge's config fields.

use serde::Deserialize;

use crate::types::{CniError, ErrorCode, NetConf};

/// Fields of the reference bridge plugin that husk-bridge does not implement;
/// giving them is an error (code 2) rather than silently ignored.
const UNSUPPORTED: &[&str] = &[
    "vlan",
    "vlanTrunk",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
];

/// The bridge plugin's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct BridgeConf {
    /// Bridge name (default `cni0`).
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Give the bridge the gateway address(es).
    #[serde(rename = "isGateway", default)]
    pub is_gateway: bool,
    /// Also route the container's default route through the gateway.
    #[serde(rename = "isDefaultGateway", default)]
    pub is_default_gateway: bool,
    /// Masquerade traffic leaving the subnet.
    #[serde(rename = "ipMasq", default)]
    pub ip_masq: bool,
    /// Let a container reach itself through the bridge (hairpin).
    #[serde(rename = "hairpinMode", default)]
    pub hairpin_mode: bool,
    /// MTU of the bridge and veth.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Put the bridge in promiscuous mode.
    #[serde(rename = "promiscMode", default)]
    pub promisc_mode: bool,
    /// Accepted for compatibility (the address is always (re)applied).
    #[serde(rename = "forceAddress", default)]
    pub force_address: bool,
}

fn default_bridge() -> String {
    "cni0".into()
}

impl BridgeConf {
    /// Parse and validate the plugin fields of `conf`.
    pub fn parse(conf: &NetConf) -> Result<BridgeConf, CniError> {
        for k in UNSUPPORTED {
            if conf
                .extra
                .get(*k)
                .is_some_and(|v| !v.is_null() && *v != false)
            {
                return Err(CniError::new(
                    ErrorCode::UnsupportedField,
                    format!("{k}: not supported by husk-bridge"),
                ));
            }
        }
        let mut c: BridgeConf =
            serde_json::from_value(serde_json::Value::Object(conf.extra.clone()))
                .map_err(|e| CniError::from_json("bridge config", &e))?;
        if c.is_default_gateway {
            c.is_gateway = true;
        }
        if c.bridge.is_empty()
            || c.bridge.len() > 15
            || c.bridge.contains('/')
            || c.bridge.chars().any(char::is_whitespace)
        {
            return Err(CniError::invalid_config(format!(
                "bridge: {:?} is not a valid interface name",
                c.bridge
            )));
        }
        if let Some(m) = c.mtu {
            if !(68..=65535).contains(&m) {
                return Err(CniError::invalid_config(format!(
                    "mtu: {m} is out of range 68-65535"
                )));
            }
        }
        if conf.name.contains('/') || conf.name.starts_with('.') {
            return Err(CniError::invalid_config(format!(
                "name: {:?} cannot name a directory",
                conf.name
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> NetConf {
        NetConf::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"husk-bridge"{extra}}}"#)
                .as_bytes(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn defaults() {
        let c = BridgeConf::parse(&conf("")).unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(!c.ip_masq && !c.is_gateway);
        let c = BridgeConf::parse(&conf(r#","isDefaultGateway":true,"mtu":1400"#)).unwrap();
        assert!(c.is_gateway);
        assert_eq!(c.mtu, Some(1400));
    }

    #[test]
    fn bad_fields() {
        let e = BridgeConf::parse(&conf(r#","bridge":"a-name-that-is-too-long""#)).unwrap_err();
        assert!(e.msg.starts_with("bridge:"));
        let e = BridgeConf::parse(&conf(r#","mtu":10"#)).unwrap_err();
        assert!(e.msg.starts_with("mtu:"));
        let e = BridgeConf::parse(&conf(r#","ipMasq":"yes""#)).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("bool"), "{}", e.msg);
        let e = BridgeConf::parse(&conf(r#","vlan":5"#)).unwrap_err();
        assert_eq!(e.code, 2);
    }
}
