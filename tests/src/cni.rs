//! A CNI test lab: a "node" netns where plugins run, an "outside" netns
//! linked to it by a veth pair (the view of another host), pod netns, and
//! `husk-cni-tool` (husk's invocation library) run inside the node.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use crate::netns::TestNetns;

/// The node's address on the link to "outside".
pub const NODE_IP: &str = "192.168.77.1";
/// The outside netns's address.
pub const OUTSIDE_IP: &str = "192.168.77.2";
/// Reference plugins from Debian's containernetworking-plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Node + outside netns and a scratch dir, all removed on drop.
pub struct CniLab {
    /// Where plugins run.
    pub node: TestNetns,
    /// Another host's view of the node.
    pub outside: TestNetns,
    /// Scratch (configs, IPAM data, result cache).
    pub dir: tempfile::TempDir,
}

impl Default for CniLab {
    fn default() -> Self {
        Self::new()
    }
}

impl CniLab {
    /// Create the node and outside namespaces and link them.
    pub fn new() -> CniLab {
        let node = TestNetns::new();
        let outside = TestNetns::new();
        node.exec_ok(
            "ip",
            &[
                "link",
                "add",
                "vout",
                "type",
                "veth",
                "peer",
                "name",
                "vin",
                "netns",
                outside.name(),
            ],
        );
        node.exec_ok(
            "ip",
            &["addr", "add", &format!("{NODE_IP}/24"), "dev", "vout"],
        );
        node.exec_ok("ip", &["link", "set", "vout", "up"]);
        outside.exec_ok(
            "ip",
            &["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "vin"],
        );
        outside.exec_ok("ip", &["link", "set", "vin", "up"]);
        CniLab {
            node,
            outside,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Write a config file into the lab dir.
    pub fn write_conf(&self, name: &str, json: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, json).expect("write conf");
        p
    }

    /// The IPAM data dir.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// A conflist of husk-bridge + husk-portmap.
    pub fn husk_conflist(&self, version: &str, subnet: &str) -> String {
        format!(
            r#"{{"cniVersion":"{version}","name":"podnet","plugins":[
              {{"type":"husk-bridge","bridge":"cni-h0","isGateway":true,"ipMasq":true,"hairpinMode":true,
                "ipam":{{"type":"host-local","subnet":"{subnet}","routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}},
              {{"type":"husk-portmap","capabilities":{{"portMappings":true}}}}]}}"#,
            self.ipam_dir().display()
        )
    }

    /// The same network with Debian's reference bridge + host-local + portmap.
    pub fn reference_conflist(&self, subnet: &str) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"podnet","plugins":[
              {{"type":"bridge","bridge":"cni-r0","isGateway":true,"ipMasq":true,"hairpinMode":true,
                "ipam":{{"type":"host-local","subnet":"{subnet}","routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}},
              {{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
            self.ipam_dir().display()
        )
    }

    /// Run `husk-cni-tool` in the node with plugins from `plugin_dirs`.
    pub fn tool(&self, conf: &Path, plugin_dirs: &str, args: &[&str]) -> Output {
        self.node
            .command(
                crate::bins::bin("husk-cni-tool")
                    .to_str()
                    .expect("utf-8 path"),
            )
            .arg("--conf")
            .arg(conf)
            .arg("--plugin-dir")
            .arg(plugin_dirs)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .expect("run husk-cni-tool")
    }

    /// Run the tool and require success; returns stdout.
    pub fn tool_ok(&self, conf: &Path, plugin_dirs: &str, args: &[&str]) -> String {
        let out = self.tool(conf, plugin_dirs, args);
        assert!(
            out.status.success(),
            "husk-cni-tool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The node's nat table as iptables-save prints it.
    pub fn nat(&self) -> String {
        self.node.exec_ok("iptables-save", &["-t", "nat"])
    }
}

/// The directory with husk's built plugins.
pub fn husk_plugin_dir() -> String {
    crate::bins::bin("husk-bridge")
        .parent()
        .expect("bin dir")
        .display()
        .to_string()
}

/// The container address (without prefix) of an ADD result.
pub fn result_ip(result_json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(result_json).expect("result JSON");
    let a = v["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address")
        .to_string();
    a.split('/').next().expect("address").to_string()
}

/// A process started in a netns, killed (by pid) and reaped on drop.
pub struct Bg(pub Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serve `text` as /index.html with busybox httpd on `port` in `ns`.
pub fn httpd(ns: &TestNetns, dir: &Path, port: u16, text: &str) -> Bg {
    std::fs::create_dir_all(dir).expect("www dir");
    std::fs::write(dir.join("index.html"), text).expect("index.html");
    let child = ns
        .command("busybox")
        .args(["httpd", "-f", "-p", &port.to_string(), "-h"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start httpd");
    // Wait until it listens.
    for _ in 0..50 {
        let out = ns.exec("ss", &["-ltnH", &format!("sport = :{port}")]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Bg(child)
}

/// `curl` a URL from inside `ns`; the body, or None when it fails.
pub fn curl(ns: &TestNetns, url: &str) -> Option<String> {
    let out = ns.exec("curl", &["-sS", "-m", "5", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// busybox ping once from `ns`.
pub fn ping(ns: &TestNetns, ip: &str) -> bool {
    ns.exec("busybox", &["ping", "-c", "1", "-W", "2", ip])
        .status
        .success()
}

/// Connect from `from` to a listener in `to` on `ip:port` and return the
/// peer address the listener saw (read with `ss` while the connection is open).
pub fn seen_source(from: &TestNetns, to: &TestNetns, ip: &str, port: u16) -> Option<String> {
    // busybox nc closes the connection at EOF on stdin: hold both stdins open.
    let _listener = Bg(to
        .command("busybox")
        .args(["nc", "-l", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("nc -l"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The client keeps the connection open while we hold its stdin.
    let _client = Bg(from
        .command("busybox")
        .args(["nc", ip, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("nc client"));
    for _ in 0..40 {
        let out = to.exec(
            "ss",
            &["-tnH", "state", "established", &format!("sport = :{port}")],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text.lines().next() {
            // Local and peer columns: `addr:port addr:port`.
            let peer = line.split_whitespace().last()?;
            let addr = peer.rsplit_once(':')?.0;
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            return Some(addr.trim_start_matches("::ffff:").to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// The connectivity every conflist must give (husk's or the reference's):
/// two pods with distinct addresses that reach each other and the gateway,
/// masquerade towards outside, and a hostPort reachable from outside, from
/// the node's localhost and from the other pod (hairpin).
pub fn connectivity_suite(lab: &CniLab, conf: &Path, plugin_dirs: &str, gateway: &str) {
    let p1 = TestNetns::new();
    let p2 = TestNetns::new();
    let pm = r#"[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]"#;
    let r1 = lab.tool_ok(
        conf,
        plugin_dirs,
        &[
            "add",
            "pod1",
            p1.path().to_str().unwrap(),
            "--port-mappings",
            pm,
        ],
    );
    let r2 = lab.tool_ok(
        conf,
        plugin_dirs,
        &["add", "pod2", p2.path().to_str().unwrap()],
    );
    let (ip1, ip2) = (result_ip(&r1), result_ip(&r2));
    assert_ne!(ip1, ip2, "two pods got one address");

    assert!(ping(&p1, &ip2), "pod1 cannot reach pod2 {ip2}");
    assert!(ping(&p2, &ip1), "pod2 cannot reach pod1 {ip1}");
    assert!(ping(&p1, gateway), "pod1 cannot reach the gateway");

    // Masquerade: the outside sees the node's address, not the pod's.
    let src = seen_source(&p2, &lab.outside, OUTSIDE_IP, 9000).expect("pod2 reached outside");
    assert_eq!(
        src, NODE_IP,
        "traffic from pod2 to outside is not masqueraded"
    );

    let www = lab.dir.path().join("www");
    let _h = httpd(&p1, &www, 80, "hello from pod1\n");
    let want = Some("hello from pod1\n".to_string());
    assert_eq!(
        curl(&lab.outside, &format!("http://{NODE_IP}:8080/")),
        want,
        "hostPort from outside"
    );
    assert_eq!(
        curl(&lab.node, "http://127.0.0.1:8080/"),
        want,
        "hostPort from node localhost"
    );
    assert_eq!(
        curl(&p2, &format!("http://{NODE_IP}:8080/")),
        want,
        "hostPort from pod2 (hairpin)"
    );

    // CHECK without mappings checks the ones cached at ADD. The reference
    // portmap 1.1.1 then also looks for ip6tables rules of this IPv4-only
    // pod and fails (containernetworking/plugins#819): give it none.
    let reference_portmap =
        std::fs::read_to_string(conf).is_ok_and(|c| c.contains(r#""type":"portmap""#));
    let p1_path = p1.path();
    let mut check = vec!["check", "pod1", p1_path.to_str().unwrap()];
    if reference_portmap {
        check.extend(["--port-mappings", "[]"]);
    }
    lab.tool_ok(conf, plugin_dirs, &check);
    lab.tool_ok(
        conf,
        plugin_dirs,
        &["del", "pod1", p1.path().to_str().unwrap()],
    );
    lab.tool_ok(
        conf,
        plugin_dirs,
        &["del", "pod2", p2.path().to_str().unwrap()],
    );
    assert_eq!(
        curl(&lab.outside, &format!("http://{NODE_IP}:8080/")),
        None,
        "hostPort still open after DEL"
    );
}

/// The host-side veth named in an ADD result (husk-bridge and the reference
/// bridge both list bridge, host veth, container interface).
pub fn result_host_veth(result_json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(result_json).expect("result JSON");
    v["interfaces"][1]["name"]
        .as_str()
        .expect("interfaces[1].name")
        .to_string()
}

/// One line of `ip -o link show dev NAME` in `ns`, if the link exists.
fn link_line(ns: &TestNetns, name: &str) -> Option<String> {
    let out = ns.exec("ip", &["-o", "link", "show", "dev", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|l| !l.is_empty())
}

/// A link as `ip -o link` shows it: its index, its peer's index
/// (`NAME@ifN`) and its bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// The interface index.
    pub index: u32,
    /// The veth peer's index, in the peer's namespace.
    pub peer: Option<u32>,
    /// `master X`.
    pub master: Option<String>,
    /// `link/ether X`.
    pub mac: String,
}

/// The link `name` in `ns`, if it exists.
pub fn link_view(ns: &TestNetns, name: &str) -> Option<LinkView> {
    let line = link_line(ns, name)?;
    let (index, rest) = line.split_once(": ")?;
    let label = rest.split(':').next()?;
    let peer = label
        .split_once("@if")
        .and_then(|(_, p)| p.parse::<u32>().ok());
    let mut words = line.split_whitespace();
    let mut master = None;
    let mut mac = String::new();
    while let Some(w) = words.next() {
        match w {
            "master" => master = words.next().map(str::to_string),
            "link/ether" => mac = words.next().unwrap_or_default().to_string(),
            _ => {}
        }
    }
    Some(LinkView {
        index: index.parse().ok()?,
        peer,
        master,
        mac,
    })
}

/// The IP files of the lab's IPAM store for `network`: (address, owner id).
pub fn ipam_allocations(lab: &CniLab, network: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(lab.ipam_dir().join(network)) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<std::net::IpAddr>().is_ok() {
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            let id = owner.lines().next().unwrap_or_default().trim().to_string();
            out.push((name, id));
        }
    }
    out.sort();
    out
}
