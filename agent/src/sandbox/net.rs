//! The pod network through CNI: the first config list in the conf dir
//! (libcni's default network), invoked with husk_cni::libcni.

use std::path::{Path, PathBuf};

use husk_cni::libcni::{CniConfig, NetworkConfigList, RuntimeConf};
use k8s_cri::v1 as cri;

/// The interface name inside the pod.
pub const IFNAME: &str = "eth0";

/// Why the network could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no CNI network config in {}", .0.display())]
    NoConfig(PathBuf),
    #[error("CNI config in {}", .dir.display())]
    Config {
        dir: PathBuf,
        #[source]
        source: Box<husk_cni::libcni::ConfListError>,
    },
    #[error("CNI {op} on network {network}")]
    Plugin {
        op: &'static str,
        network: String,
        #[source]
        source: Box<husk_cni::libcni::NetworkError>,
    },
}

/// CNI settings: where configs and plugins are, where results are cached.
#[derive(Debug, Clone)]
pub struct Cni {
    conf_dir: PathBuf,
    cni: CniConfig,
}

impl Cni {
    pub fn new(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        Cni {
            conf_dir,
            cni: CniConfig::new(bin_dirs, cache_dir),
        }
    }

    /// The default network (the first config, by file name).
    pub fn default_network(&self) -> Result<NetworkConfigList, NetError> {
        let lists = CniConfig::load_dir(&self.conf_dir).map_err(|source| NetError::Config {
            dir: self.conf_dir.clone(),
            source: Box::new(source),
        })?;
        lists
            .into_iter()
            .next()
            .ok_or_else(|| NetError::NoConfig(self.conf_dir.clone()))
    }

    /// The network named `name` (for DEL of what ADD used).
    fn network_named(&self, name: &str) -> Result<NetworkConfigList, NetError> {
        let lists = CniConfig::load_dir(&self.conf_dir).map_err(|source| NetError::Config {
            dir: self.conf_dir.clone(),
            source: Box::new(source),
        })?;
        lists
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| NetError::NoConfig(self.conf_dir.clone()))
    }

    /// ADD the sandbox `id` in `netns` to `list` (the default network, loaded
    /// by the caller so it can record the name first): the pod IPs.
    pub fn add(
        &self,
        list: NetworkConfigList,
        id: &str,
        netns: &Path,
        ports: &[cri::PortMapping],
    ) -> Result<Vec<String>, NetError> {
        let name = list.name.clone();
        let net = self.cni.network(list);
        let mut rt = RuntimeConf::new(id, &netns.to_string_lossy(), IFNAME);
        let maps = port_mappings(ports);
        if !maps.is_empty() {
            rt = rt.with_capability("portMappings", serde_json::Value::Array(maps));
        }
        let res = net.add(&rt).map_err(|source| NetError::Plugin {
            op: "ADD",
            network: name.clone(),
            source: Box::new(source),
        })?;
        Ok(res.ips.iter().map(|i| i.address.ip().to_string()).collect())
    }

    /// DEL the sandbox `id` from `network`; idempotent. `netns` may be gone.
    pub fn del(&self, id: &str, network: &str, netns: Option<&Path>) -> Result<(), NetError> {
        let list = match self.network_named(network) {
            Ok(l) => l,
            // The config was removed: nothing left to call.
            Err(NetError::NoConfig(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let ns = netns
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rt = RuntimeConf::new(id, &ns, IFNAME);
        self.cni
            .network(list)
            .del(&rt)
            .map_err(|source| NetError::Plugin {
                op: "DEL",
                network: network.to_string(),
                source: Box::new(source),
            })
    }
}

/// CRI port mappings as the `portMappings` capability wants them.
fn port_mappings(ports: &[cri::PortMapping]) -> Vec<serde_json::Value> {
    ports
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let proto = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            let mut m = serde_json::json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": proto,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = p.host_ip.clone().into();
            }
            m
        })
        .collect()
}
