//! The network configuration a plugin receives on stdin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::CniError;
use super::result::CniResult;
use super::version::CniVersion;

/// The fields every plugin config has; plugin-specific fields stay in `extra`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetConf {
    /// Spec version of this config.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Network name (unique per host).
    pub name: String,
    /// Plugin binary name.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Capabilities the plugin asks the runtime for (`portMappings`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
    /// The IPAM section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    /// The previous plugin's result in a chain.
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prev_result: Option<Value>,
    /// Capability arguments the runtime filled in.
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_config: Option<Value>,
    /// Everything else (plugin-specific).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `portMappings` capability entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the node.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// Port in the container.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp` or `udp` (default tcp).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Only this node address (default: all local addresses).
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

fn default_protocol() -> String {
    "tcp".into()
}

impl NetConf {
    /// Parse a plugin's stdin and check the version.
    pub fn parse(bytes: &[u8]) -> Result<(NetConf, CniVersion), CniError> {
        let conf: NetConf =
            serde_json::from_slice(bytes).map_err(|e| CniError::from_json("network config", &e))?;
        if conf.name.is_empty() {
            return Err(CniError::invalid_config("name: must not be empty"));
        }
        let v = CniVersion::supported(&conf.cni_version)?;
        Ok((conf, v))
    }

    /// The previous result, parsed (any supported version's layout).
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match &self.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| CniError::from_json("prevResult", &e)),
        }
    }

    /// `runtimeConfig.portMappings`, when the runtime passed any.
    pub fn port_mappings(&self) -> Result<Vec<PortMapping>, CniError> {
        let Some(pm) = self
            .runtime_config
            .as_ref()
            .and_then(|r| r.get("portMappings"))
        else {
            return Ok(Vec::new());
        };
        serde_json::from_value(pm.clone())
            .map_err(|e| CniError::from_json("runtimeConfig.portMappings", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_keeps_extra_fields() {
        let (c, v) = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"husk-bridge","bridge":"b0",
                "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]}}"#,
        )
        .unwrap();
        assert_eq!(v, CniVersion::V1_0_0);
        assert_eq!(c.extra["bridge"], "b0");
        let pm = c.port_mappings().unwrap();
        assert_eq!(pm[0].protocol, "tcp");
        assert_eq!(pm[0].host_port, 8080);
    }

    #[test]
    fn missing_name_is_code_7_and_names_field() {
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","type":"x"}"#).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("name"));
    }

    #[test]
    fn bad_version_is_code_1() {
        let e = NetConf::parse(br#"{"cniVersion":"9.9.9","name":"n","type":"x"}"#).unwrap_err();
        assert_eq!(e.code, 1);
    }

    #[test]
    fn bad_port_is_code_7() {
        let (c, _) = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"x",
                "runtimeConfig":{"portMappings":[{"hostPort":70000,"containerPort":80}]}}"#,
        )
        .unwrap();
        assert_eq!(c.port_mappings().unwrap_err().code, 7);
    }
}
