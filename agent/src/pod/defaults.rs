//! Defaulting as the apiserver does it on create (`SetObjectDefaults_Pod`),
//! so that a static pod behaves as the same manifest would in a cluster.

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, Lifecycle, LifecycleHandler, Pod, PodSecurityContext, Probe, Volume,
};

/// Default restart policy, grace period, DNS policy and the rest.
pub const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;
/// Default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Mode of configMap/secret/downwardAPI/projected files unless set (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// Fill in every field the apiserver defaults. Idempotent.
pub fn apply(pod: &mut Pod) {
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".to_string());
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    set(&mut spec.restart_policy, "Always");
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_SECONDS);
    set(&mut spec.dns_policy, "ClusterFirst");
    set(&mut spec.scheduler_name, "default-scheduler");
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.enable_service_links.get_or_insert(true);
    // `serviceAccount` is the deprecated alias; the apiserver mirrors it.
    if spec.service_account_name.is_none() {
        spec.service_account_name = spec.service_account.clone();
    }
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
}

fn set(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(value.to_string());
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent`.
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        c.image_pull_policy = Some(image_pull_policy(c.image.as_deref().unwrap_or("")).to_string());
    }
    set(
        &mut c.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    set(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set(&mut p.protocol, "TCP");
        if host_network && p.host_port.unwrap_or(0) == 0 {
            p.host_port = Some(p.container_port);
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe_defaults(probe);
    }
    if let Some(Lifecycle {
        post_start,
        pre_stop,
        ..
    }) = c.lifecycle.as_mut()
    {
        for h in [post_start, pre_stop].into_iter().flatten() {
            handler(h);
        }
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set(&mut f.api_version, "v1");
        }
    }
    // Requests default to limits (`SetDefaults_Pod`), which is what makes a
    // limits-only container Guaranteed.
    if let Some(res) = c.resources.as_mut()
        && let Some(limits) = res.limits.as_ref()
        && !limits.is_empty()
    {
        let requests = res.requests.get_or_insert_with(Default::default);
        for (k, v) in limits {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn zero_to(field: &mut Option<i32>, value: i32) {
    if field.unwrap_or(0) == 0 {
        *field = Some(value);
    }
}

fn probe_defaults(p: &mut Probe) {
    zero_to(&mut p.timeout_seconds, 1);
    zero_to(&mut p.period_seconds, 10);
    zero_to(&mut p.success_threshold, 1);
    zero_to(&mut p.failure_threshold, 3);
    p.initial_delay_seconds.get_or_insert(0);
    if let Some(h) = p.http_get.as_mut() {
        http_get(h);
    }
    if let Some(g) = p.grpc.as_mut() {
        g.service.get_or_insert_with(String::new);
    }
}

fn handler(h: &mut LifecycleHandler) {
    if let Some(g) = h.http_get.as_mut() {
        http_get(g);
    }
}

fn http_get(h: &mut HTTPGetAction) {
    set(&mut h.path, "/");
    set(&mut h.scheme, "HTTP");
}

fn volume(v: &mut Volume) {
    let any_source = v.config_map.is_some()
        || v.secret.is_some()
        || v.empty_dir.is_some()
        || v.host_path.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
        || crate::pod::validate::volume::other_source(v).is_some();
    if !any_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.config_map.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.downward_api.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for f in s.items.iter_mut().flatten() {
            if let Some(r) = f.field_ref.as_mut() {
                set(&mut r.api_version, "v1");
            }
        }
    }
    if let Some(s) = v.projected.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for src in s.sources.iter_mut().flatten() {
            for f in src
                .downward_api
                .iter_mut()
                .flat_map(|d| d.items.iter_mut().flatten())
            {
                if let Some(r) = f.field_ref.as_mut() {
                    set(&mut r.api_version, "v1");
                }
            }
            if let Some(t) = src.service_account_token.as_mut() {
                t.expiration_seconds.get_or_insert(3600);
            }
        }
    }
    if let Some(h) = v.host_path.as_mut() {
        h.type_.get_or_insert_with(String::new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::manifest::{Format, Object, parse};

    fn load(yaml: &str) -> Pod {
        match parse(yaml, Format::Yaml).unwrap().remove(0) {
            Object::Pod(p) => *p,
            _ => panic!("not a pod"),
        }
    }

    #[test]
    fn pull_policy_from_tag() {
        for (image, want) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("localhost:5000/busybox", "Always"),
            ("localhost:5000/busybox:v1", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
        ] {
            assert_eq!(image_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn apiserver_defaults() {
        let mut pod = load(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  hostNetwork: true
  initContainers: [{name: i, image: "busybox:1"}]
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 80}]
    resources: {limits: {cpu: 500m, memory: 64Mi}, requests: {cpu: 100m}}
    livenessProbe: {httpGet: {port: 80}}
    readinessProbe: {grpc: {port: 9}, periodSeconds: 3}
    env: [{name: N, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
  volumes: [{name: v}, {name: s, secret: {secretName: x}}]
"#,
        );
        apply(&mut pod);
        let again = pod.clone();
        apply(&mut pod);
        assert_eq!(pod, again, "defaulting is idempotent");
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.enable_service_links, Some(true));
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.protocol.as_deref(), port.host_port),
            (Some("TCP"), Some(80))
        );
        let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["cpu"].0, "100m", "an explicit request stays");
        assert_eq!(
            req["memory"].0, "64Mi",
            "a missing request comes from the limit"
        );
        let l = c.liveness_probe.as_ref().unwrap();
        assert_eq!(
            (
                l.timeout_seconds,
                l.period_seconds,
                l.success_threshold,
                l.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        let h = l.http_get.as_ref().unwrap();
        assert_eq!(
            (h.path.as_deref(), h.scheme.as_deref()),
            (Some("/"), Some("HTTP"))
        );
        assert_eq!(c.readiness_probe.as_ref().unwrap().period_seconds, Some(3));
        let env = &c.env.as_ref().unwrap()[0];
        let fr = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(fr.api_version.as_deref(), Some("v1"));
        let vols = spec.volumes.as_ref().unwrap();
        assert!(
            vols[0].empty_dir.is_some(),
            "a volume without a source is an emptyDir"
        );
        assert_eq!(vols[1].secret.as_ref().unwrap().default_mode, Some(0o644));
    }
}
