//! The pod layer inside `husklet serve`: static pods from
//! `--pod-manifest-path`, run by the pod manager on husklet's own CRI
//! service, or on another runtime's (`--container-runtime-endpoint`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use husklet::cri::remote::RemoteCri;
use husklet::cri::{Cri, ImageService, RuntimeService};
use husklet::pod::config::NodeContext;
use husklet::pod::downward::Allocatable;
use husklet::pod::manager::PodManager;
use husklet::pod::node_host::NodeHost;
use husklet::pod::qos::CgroupDriver;
use husklet::pod::quantity::Quantity;
use husklet::pod::report_file::{self, PodFile};
use husklet::source::file::FILE_ANNOTATION;
use husklet::source::{ConfigDir, PodEvent, SourceError, StaticPods};

/// kubelet's flags for running pods, under the same names.
#[derive(Args, Clone)]
pub struct PodArgs {
    /// Static pod manifests (*.yaml, *.yml, *.json), watched.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// The node's name [default: the hostname].
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// Run pods on this CRI endpoint instead of husklet's own service.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// Where container logs go (`<dir>/<ns>_<name>_<uid>/<container>/<n>.log`).
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// Parent of the kubepods cgroup hierarchy.
    #[arg(long, default_value = "/")]
    pub cgroup_root: String,
    /// `cgroupfs` or `systemd` names for pod cgroups.
    #[arg(long, default_value = "cgroupfs", value_parser = ["cgroupfs", "systemd"])]
    pub cgroup_driver: String,
    /// ConfigMaps and Secrets (YAML/JSON manifests) pods' volumes and env
    /// refer to, watched (standalone nodes have no apiserver to ask).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// The resolv.conf pods with dnsPolicy Default get.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Cluster DNS server IPs (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Join the control plane this kubeconfig names (client certificate or
    /// bearer token): register the Node, run the pods bound to it. Without
    /// it husklet runs standalone (static pods only).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A kubeconfig with bootstrap credentials (a bootstrap token): when
    /// --kubeconfig is missing or has no unexpired client certificate, a
    /// client certificate is requested with it (a CSR to
    /// kubernetes.io/kube-apiserver-client-kubelet), stored in --cert-dir,
    /// and --kubeconfig is written to use it.
    #[arg(long, requires = "kubeconfig")]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Rotate the client certificate: request a new one (new key) at
    /// 70-90 % of its lifetime, stored in --cert-dir and used without a
    /// restart.
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub rotate_certificates: bool,
    /// Serve the kubelet API with a certificate the cluster issues (a CSR
    /// to kubernetes.io/kubelet-serving for the node's name and address),
    /// rotated like the client certificate; nothing is served until it is
    /// issued.
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub rotate_server_certificates: bool,
    /// The node's InternalIP [default: the address of the default route's
    /// interface].
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Labels to add when registering the node (`key=value,...`).
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// Taints to register the node with (`key[=value]:Effect,...`).
    #[arg(long, value_delimiter = ',', value_parser = parse_taint)]
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// Hard eviction thresholds that turn the node's pressure conditions
    /// True (`memory.available<100Mi,nodefs.available<10%,pid.available<10%`).
    #[arg(
        long,
        default_value = "memory.available<100Mi,nodefs.available<10%,pid.available<10%"
    )]
    pub eviction_hard: husklet::node::info::Eviction,
    /// Resources reserved for the system (`cpu=100m,memory=256Mi,
    /// ephemeral-storage=1Gi,pid=1000`), kept from allocatable.
    #[arg(long, default_value = "")]
    pub system_reserved: husklet::node::info::Reserved,
    /// Resources reserved for Kubernetes' own daemons (same syntax), kept
    /// from allocatable.
    #[arg(long, default_value = "")]
    pub kube_reserved: husklet::node::info::Reserved,
    /// Most pods this node runs (`status.capacity.pods`).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected key=value"))?;
    if k.is_empty() {
        return Err(format!("{s:?}: empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_taint(s: &str) -> Result<k8s_openapi::api::core::v1::Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "{s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("{s:?}: empty key"));
    }
    Ok(k8s_openapi::api::core::v1::Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

/// The node's apiserver client (`--kubeconfig`, TLS bootstrap with
/// `--bootstrap-kubeconfig`), its client certificate rotation spawned with
/// `--rotate-certificates`; `None` when standalone.
pub async fn node_client(a: &PodArgs, cert_dir: &Path) -> anyhow::Result<Option<kube::Client>> {
    let Some(kubeconfig) = &a.kubeconfig else {
        return Ok(None);
    };
    let settings = husklet::node::certs::bootstrap::Settings {
        node: node_name(a),
        kubeconfig: kubeconfig.clone(),
        bootstrap_kubeconfig: a.bootstrap_kubeconfig.clone(),
        cert_dir: std::path::absolute(cert_dir)?,
        rotate: a.rotate_certificates,
    };
    let nc = husklet::node::certs::bootstrap::node_client(&settings)
        .await
        .with_context(|| format!("the node's credentials ({})", kubeconfig.display()))?;
    let client = nc.client.clone();
    tokio::spawn(nc.rotate());
    Ok(Some(client))
}

/// With `--rotate-server-certificates`: the kubelet API's certificate, to be
/// issued by the cluster for the node's name and address (requested and
/// rotated in the background with `client`).
pub fn serving_cert(
    a: &PodArgs,
    client: Option<&kube::Client>,
    cert_dir: &Path,
) -> anyhow::Result<Option<Arc<husklet::node::certs::serving::ServingCert>>> {
    let Some(client) = client.filter(|_| a.rotate_server_certificates) else {
        return Ok(None);
    };
    let ip = match a.node_ip {
        Some(ip) => ip,
        None => husklet::node::info::detect_node_ip()
            .context("no address for the serving certificate: pass --node-ip")?,
    };
    let cert = Arc::new(husklet::node::certs::serving::ServingCert::default());
    let settings = husklet::node::certs::serving::Settings {
        node: node_name(a),
        dns_names: vec![node_name(a)],
        ips: vec![ip],
        dir: std::path::absolute(cert_dir)?,
    };
    tokio::spawn(husklet::node::certs::serving::run(
        client.clone(),
        settings,
        cert.clone(),
    ));
    Ok(Some(cert))
}

/// The node's name: --hostname-override, else the hostname.
pub fn node_name(a: &PodArgs) -> String {
    a.hostname_override.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_lowercase())
            .unwrap_or_else(|_| "localhost".into())
    })
}

fn memory_capacity() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Node allocatable cpu and memory for the downward API and memory-backed
/// emptyDirs: capacity less `--system-reserved`, `--kube-reserved` and the
/// memory eviction threshold, as the Node reports it.
fn pod_allocatable(a: &PodArgs, cpus: i64) -> Allocatable {
    use husklet::node::info;
    let capacity = BTreeMap::from([
        (
            "cpu".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(cpus.to_string()),
        ),
        (
            "memory".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(memory_capacity().to_string()),
        ),
    ]);
    let alloc = info::allocatable(
        &capacity,
        &a.system_reserved,
        &a.kube_reserved,
        &a.eviction_hard,
    );
    let get = |k: &str| {
        alloc
            .get(k)
            .and_then(|q| Quantity::parse(&q.0).ok())
            .unwrap_or(Quantity::ZERO)
    };
    Allocatable {
        cpu: get("cpu"),
        memory: get("memory"),
        ephemeral_storage: Quantity::ZERO,
    }
}

/// Start the pod layer; the returned manager's `shutdown` terminates its pods.
/// Pod volumes and files go under `<root>/pods/<uid>/`.
/// `client` is the node's apiserver client when it joins a control plane
/// (`--kubeconfig`).
pub async fn start(
    a: &PodArgs,
    root: &Path,
    state: &Path,
    own: Arc<Cri>,
    client: Option<kube::Client>,
) -> anyhow::Result<Arc<PodManager>> {
    let (rt, images): (Arc<dyn RuntimeService>, Arc<dyn ImageService>) =
        match &a.container_runtime_endpoint {
            Some(ep) => {
                let r = RemoteCri::connect(ep)
                    .await
                    .with_context(|| format!("--container-runtime-endpoint {ep}"))?;
                (Arc::new(r.clone()), Arc::new(r))
            }
            None => (own.clone(), own),
        };
    let node = node_name(a);
    let runtime_version = rt
        .version(k8s_cri::v1::VersionRequest::default())
        .await
        .map(|v| format!("{}://{}", v.runtime_name, v.runtime_version))
        .unwrap_or_else(|_| format!("husk://{}", env!("CARGO_PKG_VERSION")));
    let ctx = NodeContext {
        node_name: node.clone(),
        pod_log_dir: std::path::absolute(&a.pod_log_dir)?
            .to_string_lossy()
            .into_owned(),
        resolv_conf: std::fs::read_to_string(&a.resolv_conf).unwrap_or_default(),
        cluster_dns: a.cluster_dns.clone(),
        cluster_domain: a.cluster_domain.clone(),
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let node_ip = match a.node_ip {
        Some(ip) => Some(ip),
        None if a.kubeconfig.is_some() => Some(
            husklet::node::info::detect_node_ip()
                .context("no address to register the node with: pass --node-ip")?,
        ),
        None => None,
    };
    let api_objects = husklet::node::objects::ApiObjects::default();
    let objects: Arc<dyn husklet::pod::objects::ObjectStore> = match &a.config_dir {
        _ if a.kubeconfig.is_some() => Arc::new(api_objects.clone()),
        Some(d) => {
            let cd = ConfigDir::new(std::path::absolute(d)?);
            let store = cd.store();
            let mut rx = cd.watch(Duration::from_secs(1));
            tokio::spawn(async move {
                while let Some((_, errors)) = rx.recv().await {
                    for e in errors {
                        tracing::warn!("config dir: {}", husklet::cri::error::chain(&e));
                    }
                }
            });
            Arc::new(store)
        }
        None => Arc::new(husklet::source::SharedObjects::default()),
    };
    let token_source: Option<Arc<dyn husklet::pod::token::TokenSource>> = a
        .kubeconfig
        .is_some()
        .then(|| Arc::new(api_objects.clone()) as Arc<dyn husklet::pod::token::TokenSource>);
    let host = NodeHost {
        root: root.to_path_buf(),
        cgroup_root: a.cgroup_root.clone(),
        driver: if a.cgroup_driver == "systemd" {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        },
        objects,
        allocatable: pod_allocatable(a, cpus),
        memory_capacity: memory_capacity(),
        host_ips: node_ip.iter().map(|ip| ip.to_string()).collect(),
        cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        tokens: Arc::new(husklet::pod::token::TokenManager::new(token_source)),
    };
    let reports = report_file::dir(state);
    let mgr = Arc::new(
        PodManager::new(rt, images, Arc::new(host), ctx)
            .await
            .with_report_dir(reports.clone()),
    );
    if let Some(dir) = a.pod_manifest_path.clone() {
        tokio::spawn(watch_static_dir(dir, node.clone(), reports, mgr.clone()));
    }
    if let (Some(kubeconfig), Some(node_ip), Some(client)) = (&a.kubeconfig, node_ip, client) {
        let cfg = husklet::node::NodeConfig {
            name: node,
            kubeconfig: kubeconfig.clone(),
            node_ip,
            labels: a.node_labels.iter().cloned().collect(),
            taints: a.register_with_taints.clone(),
            max_pods: a.max_pods,
            eviction: a.eviction_hard,
            system_reserved: a.system_reserved,
            kube_reserved: a.kube_reserved,
            runtime_version,
            root: root.to_path_buf(),
        };
        husklet::node::join(cfg, client, mgr.clone(), api_objects)
            .await
            .with_context(|| format!("join the control plane of {}", kubeconfig.display()))?;
    }
    Ok(mgr)
}

/// Apply the static pod dir's changes: new pods start, removed ones are
/// terminated (a changed manifest is a new UID: the old pod goes, the new
/// one starts), a bad file is reported as a rejected pod in `husklet pods`
/// until it is fixed or removed. Housekeeping removes orphans after the
/// first scan and every 30 s.
async fn watch_static_dir(dir: PathBuf, node: String, reports: PathBuf, mgr: Arc<PodManager>) {
    let mut rx = StaticPods::new(dir, &node).watch(Duration::from_secs(1));
    let mut rejected: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut housekeeping = tokio::time::interval(Duration::from_secs(30));
    let mut first = true;
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some((events, errors)) = batch else { return };
                for e in events {
                    apply(&mgr, e, &mut rejected, &reports);
                }
                for e in errors {
                    tracing::warn!("static pod: {}", husklet::cri::error::chain(&e));
                    let path = source_path(&e);
                    let key = rejected_key(&path);
                    let mut pod = k8s_openapi::api::core::v1::Pod::default();
                    pod.metadata.name = Some(key.clone());
                    pod.metadata.namespace = Some("default".into());
                    let f = PodFile::rejected(pod, husklet::cri::error::chain(&e));
                    if let Err(err) = report_file::write(&reports, &key, &f) {
                        tracing::warn!("write {key}: {err}");
                    }
                    rejected.insert(path, key);
                }
            }
            _ = housekeeping.tick() => {
                if first {
                    // Let the first scan's pods register before orphans are judged.
                    first = false;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                rejected.retain(|path, key| {
                    let keep = path.exists();
                    if !keep {
                        report_file::remove(&reports, key);
                    }
                    keep
                });
                let m = mgr.clone();
                tokio::spawn(async move { m.cleanup_orphans().await });
            }
        }
    }
}

fn apply(
    mgr: &Arc<PodManager>,
    e: PodEvent,
    rejected: &mut BTreeMap<PathBuf, String>,
    reports: &Path,
) {
    let mut clear = |pod: &k8s_openapi::api::core::v1::Pod| {
        let file = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FILE_ANNOTATION))
            .map(PathBuf::from);
        if let Some(key) = file.and_then(|f| rejected.remove(&f)) {
            report_file::remove(reports, &key);
        }
    };
    match e {
        PodEvent::Add(pod) => {
            clear(&pod);
            tracing::info!(
                pod = pod.metadata.name.as_deref().unwrap_or(""),
                "static pod added"
            );
            mgr.apply(*pod);
        }
        PodEvent::Update { old_uid, pod } => {
            clear(&pod);
            tracing::info!(
                pod = pod.metadata.name.as_deref().unwrap_or(""),
                "static pod changed: replacing it"
            );
            stop(mgr, old_uid);
            mgr.apply(*pod);
        }
        PodEvent::Remove { name, uid, .. } => {
            tracing::info!(pod = %name, "static pod removed");
            stop(mgr, uid);
        }
    }
}

/// Terminate a pod with its grace period; forget it once it is gone.
fn stop(mgr: &Arc<PodManager>, uid: String) {
    mgr.remove(&uid, None);
    let m = mgr.clone();
    tokio::spawn(async move { m.wait_gone(&uid).await });
}

fn source_path(e: &SourceError) -> PathBuf {
    match e {
        SourceError::Read { path, .. }
        | SourceError::Manifest { path, .. }
        | SourceError::Invalid { path, .. } => path.clone(),
    }
}

/// The report key of a rejected manifest file.
fn rejected_key(path: &Path) -> String {
    format!(
        "invalid-{}",
        path.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}
