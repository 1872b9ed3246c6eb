//! The files a sandbox's containers mount: `/etc/hostname`, `/etc/hosts`
//! and `/etc/resolv.conf`.

use std::path::Path;

use k8s_cri::v1 as cri;

use crate::image::fsutil::write_atomic;

/// Names of the files in a sandbox's files dir (also the mount targets' names).
pub const HOSTNAME: &str = "hostname";
pub const HOSTS: &str = "hosts";
pub const RESOLV: &str = "resolv.conf";

/// resolv.conf from the CRI DNS config; `None` when the sandbox has none
/// (the node's own file is copied then).
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for srv in &dns.servers {
        s.push_str(&format!("nameserver {srv}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(s)
}

/// /etc/hosts for a pod: loopback names, and the pod's own name on its IP.
pub fn hosts(hostname: &str, ip: Option<&str>) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

/// Write the three files into `dir`.
pub fn write(
    dir: &Path,
    hostname: &str,
    ip: Option<&str>,
    dns: Option<&cri::DnsConfig>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join(HOSTNAME), format!("{hostname}\n").as_bytes())?;
    write_atomic(&dir.join(HOSTS), hosts(hostname, ip).as_bytes())?;
    let resolv = match resolv_conf(dns) {
        Some(s) => s.into_bytes(),
        None => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
    };
    write_atomic(&dir.join(RESOLV), &resolv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_the_dns_config() {
        let dns = cri::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf(None), None);
        assert!(hosts("web", Some("10.1.0.5")).ends_with("10.1.0.5\tweb\n"));
    }
}
