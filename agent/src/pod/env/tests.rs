use super::*;
use crate::pod::downward::Allocatable;
use crate::pod::manifest::{Format, Object, parse};
use crate::pod::objects::MemoryObjects;
use crate::pod::quantity::Quantity;

fn load(yaml: &str) -> (Pod, MemoryObjects) {
    let mut pod = None;
    let mut objects = MemoryObjects::default();
    for o in parse(yaml, Format::Yaml).unwrap() {
        match o {
            Object::Pod(mut p) => {
                crate::pod::defaults::apply(&mut p);
                pod = Some(*p);
            }
            Object::ConfigMap(cm) => objects.put_config_map(cm),
            Object::Secret(s) => objects.put_secret(s),
        }
    }
    (pod.expect("a pod"), objects)
}

fn facts() -> PodFacts {
    PodFacts {
        pod_ips: vec!["10.1.0.5".into(), "fd00::5".into()],
        host_ips: vec!["192.168.1.2".into()],
        allocatable: Allocatable {
            cpu: Quantity::parse("4").unwrap(),
            memory: Quantity::parse("8Gi").unwrap(),
            ephemeral_storage: Quantity::parse("100Gi").unwrap(),
        },
    }
}

const OBJECTS: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: ns}
data: {LOG_LEVEL: debug, "bad=key": x, "1st": y, greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: ns}
stringData: {password: s3cret}
"#;

#[test]
fn kubelet_order_and_sources() {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: ns, uid: u-1, labels: {{app: web}}, annotations: {{note: hi}}}}
spec:
  nodeName: node-1
  serviceAccountName: robot
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "echo $(GREETING) $(UNDEFINED) $$(GREETING)"]
    args: ["$(POD_NAME)", "$(CFG_LOG_LEVEL)"]
    resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}
    envFrom:
    - {{prefix: CFG_, configMapRef: {{name: cfg}}}}
    - {{configMapRef: {{name: missing, optional: true}}}}
    env:
    - {{name: GREETING, value: "$(CFG_greeting) world"}}
    - {{name: CFG_LOG_LEVEL, value: info}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: POD_NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: POD_UID, valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}}}
    - {{name: APP, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}}}
    - {{name: NOTE, valueFrom: {{fieldRef: {{fieldPath: "metadata.annotations['note']"}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: SA, valueFrom: {{fieldRef: {{fieldPath: spec.serviceAccountName}}}}}}
    - {{name: IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: IPS, valueFrom: {{fieldRef: {{fieldPath: status.podIPs}}}}}}
    - {{name: HOST_IP, valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}}}
    - {{name: CPU_M, valueFrom: {{resourceFieldRef: {{resource: limits.cpu, divisor: 1m}}}}}}
    - {{name: CPU, valueFrom: {{resourceFieldRef: {{resource: limits.cpu}}}}}}
    - {{name: MEM_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: REQ_CPU_M, valueFrom: {{resourceFieldRef: {{resource: requests.cpu, divisor: 1m}}}}}}
    - {{name: STORAGE_GI, valueFrom: {{resourceFieldRef: {{resource: limits.ephemeral-storage, divisor: 1Gi}}}}}}
    - {{name: LEVEL, valueFrom: {{configMapKeyRef: {{name: cfg, key: LOG_LEVEL}}}}}}
    - {{name: OPT_KEY, valueFrom: {{configMapKeyRef: {{name: cfg, key: nope, optional: true}}}}}}
    - {{name: OPT_CM, valueFrom: {{configMapKeyRef: {{name: nope, key: nope, optional: true}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    - {{name: EMPTY}}
{OBJECTS}"#
    );
    let (pod, objects) = load(&yaml);
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let env = environment(&pod, c, &facts(), &objects).unwrap();
    let want = [
        ("CFG_1st", "y"),
        ("CFG_LOG_LEVEL", "info"),
        ("CFG_greeting", "hello"),
        ("GREETING", "hello world"),
        ("POD_NAME", "web"),
        ("POD_NS", "ns"),
        ("POD_UID", "u-1"),
        ("APP", "web"),
        ("NOTE", "hi"),
        ("NODE", "node-1"),
        ("SA", "robot"),
        ("IP", "10.1.0.5"),
        ("IPS", "10.1.0.5,fd00::5"),
        ("HOST_IP", "192.168.1.2"),
        ("CPU_M", "500"),
        ("CPU", "1"),
        ("MEM_MI", "64"),
        ("REQ_CPU_M", "500"),
        ("STORAGE_GI", "100"),
        ("LEVEL", "debug"),
        ("PASSWORD", "s3cret"),
        ("EMPTY", ""),
    ];
    let got: Vec<(&str, &str)> = env
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(env.warnings.len(), 1, "{:?}", env.warnings);
    assert!(
        env.warnings[0]
            .contains("Keys [CFG_bad=key] from the EnvFrom configmap ns/cfg were skipped"),
        "{:?}",
        env.warnings
    );
    let (cmd, args) = command_and_args(c, &env);
    assert_eq!(
        cmd,
        ["sh", "-c", "echo hello world $(UNDEFINED) $(GREETING)"]
    );
    assert_eq!(args, ["web", "info"]);
}

#[test]
fn missing_references_fail_like_kubelet() {
    let cases = [
        (
            "{name: A, valueFrom: {configMapKeyRef: {name: nope, key: k}}}",
            "configmap ns/nope not found",
        ),
        (
            "{name: A, valueFrom: {configMapKeyRef: {name: cfg, key: nope}}}",
            "couldn't find key nope in ConfigMap ns/cfg",
        ),
        (
            "{name: A, valueFrom: {secretKeyRef: {name: nope, key: k}}}",
            "secret ns/nope not found",
        ),
        (
            "{name: A, valueFrom: {secretKeyRef: {name: creds, key: user}}}",
            "couldn't find key user in Secret ns/creds",
        ),
        (
            "{name: A, valueFrom: {resourceFieldRef: {containerName: other, resource: limits.cpu}}}",
            "env A",
        ),
    ];
    for (env_yaml, want) in cases {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns}}\nspec:\n  containers: [{{name: c, image: i, env: [{env_yaml}]}}]\n{OBJECTS}"
        );
        let (pod, objects) = load(&yaml);
        let err = environment(
            &pod,
            &pod.spec.as_ref().unwrap().containers[0],
            &facts(),
            &objects,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns}}\nspec:\n  containers: [{{name: c, image: i, envFrom: [{{secretRef: {{name: nope}}}}]}}]\n{OBJECTS}"
    );
    let (pod, objects) = load(&yaml);
    let err = environment(
        &pod,
        &pod.spec.as_ref().unwrap().containers[0],
        &facts(),
        &objects,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "secret ns/nope not found");
}

/// An ObjectStore with Services (and whether they were listed yet).
struct WithServices(Option<Vec<k8s_openapi::api::core::v1::Service>>);

impl ObjectStore for WithServices {
    fn config_map(&self, _: &str, _: &str) -> Option<k8s_openapi::api::core::v1::ConfigMap> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<k8s_openapi::api::core::v1::Secret> {
        None
    }
    fn services(&self) -> Option<Vec<k8s_openapi::api::core::v1::Service>> {
        self.0.clone()
    }
}

fn service(
    ns: &str,
    name: &str,
    ip: &str,
    ports: serde_json::Value,
) -> k8s_openapi::api::core::v1::Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": ports}
    }))
    .unwrap()
}

fn cluster() -> Vec<k8s_openapi::api::core::v1::Service> {
    vec![
        service(
            "default",
            "kubernetes",
            "10.0.0.1",
            serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
        ),
        service(
            "default",
            "other",
            "10.0.0.2",
            serde_json::json!([{"port": 80}]),
        ),
        service(
            "ns",
            "my-svc",
            "10.0.0.11",
            serde_json::json!([
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns-udp", "port": 53, "protocol": "UDP"}]),
        ),
        service("ns", "headless", "None", serde_json::json!([{"port": 80}])),
        service("ns", "v6", "fd00::10", serde_json::json!([{"port": 8080}])),
        service(
            "elsewhere",
            "far",
            "10.0.0.99",
            serde_json::json!([{"port": 1}]),
        ),
    ]
}

#[test]
fn service_link_variables_as_kubelet_names_them() {
    assert_eq!(services::env_name("my-svc"), "MY_SVC");
    let all = cluster();
    let vars = services::from_services([&all[2]]);
    let want = [
        ("MY_SVC_SERVICE_HOST", "10.0.0.11"),
        ("MY_SVC_SERVICE_PORT", "80"),
        ("MY_SVC_SERVICE_PORT_HTTP", "80"),
        ("MY_SVC_SERVICE_PORT_DNS_UDP", "53"),
        ("MY_SVC_PORT", "tcp://10.0.0.11:80"),
        ("MY_SVC_PORT_80_TCP", "tcp://10.0.0.11:80"),
        ("MY_SVC_PORT_80_TCP_PROTO", "tcp"),
        ("MY_SVC_PORT_80_TCP_PORT", "80"),
        ("MY_SVC_PORT_80_TCP_ADDR", "10.0.0.11"),
        ("MY_SVC_PORT_53_UDP", "udp://10.0.0.11:53"),
        ("MY_SVC_PORT_53_UDP_PROTO", "udp"),
        ("MY_SVC_PORT_53_UDP_PORT", "53"),
        ("MY_SVC_PORT_53_UDP_ADDR", "10.0.0.11"),
    ];
    let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
    // IPv6 cluster IPs are bracketed in URLs; headless services give nothing.
    let v6 = services::from_services([&all[4]]);
    assert!(
        v6.contains(&("V6_PORT".into(), "tcp://[fd00::10]:8080".into())),
        "{v6:?}"
    );
    assert!(services::from_services([&all[3]]).is_empty());
}

#[test]
fn service_links_in_the_environment_explicit_env_wins() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  containers:
  - name: c
    image: i
    args: ["$(MY_SVC_SERVICE_HOST)"]
    env:
    - {name: URL, value: "http://$(MY_SVC_SERVICE_HOST):$(MY_SVC_SERVICE_PORT_HTTP)"}
    - {name: MY_SVC_SERVICE_PORT, value: "mine"}
"#;
    let (pod, _) = load(yaml);
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let env = environment(&pod, c, &facts(), &WithServices(Some(cluster()))).unwrap();
    assert_eq!(env.get("URL"), Some("http://10.0.0.11:80"));
    assert_eq!(env.get("MY_SVC_SERVICE_PORT"), Some("mine"));
    assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
    assert_eq!(env.get("KUBERNETES_SERVICE_PORT"), Some("443"));
    assert_eq!(env.get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
    assert_eq!(
        env.get("KUBERNETES_PORT_443_TCP"),
        Some("tcp://10.0.0.1:443")
    );
    assert_eq!(
        env.get("OTHER_SERVICE_HOST"),
        None,
        "another namespace's service"
    );
    assert_eq!(env.get("FAR_SERVICE_HOST"), None);
    assert_eq!(env.get("HEADLESS_SERVICE_HOST"), None);
    assert_eq!(
        env.vars
            .iter()
            .filter(|(k, _)| k == "MY_SVC_SERVICE_PORT")
            .count(),
        1
    );
    let (_, args) = command_and_args(c, &env);
    assert_eq!(args, ["10.0.0.11"]);

    // enableServiceLinks: false keeps only the master service.
    let mut off = pod.clone();
    off.spec.as_mut().unwrap().enable_service_links = Some(false);
    let env = environment(&off, c, &facts(), &WithServices(Some(cluster()))).unwrap();
    assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
    assert_eq!(env.get("MY_SVC_SERVICE_HOST"), None);
    assert_eq!(
        env.get("URL"),
        Some("http://$(MY_SVC_SERVICE_HOST):$(MY_SVC_SERVICE_PORT_HTTP)")
    );

    // A pod from the API server waits for the first list; a static pod does not.
    let err = environment(&pod, c, &facts(), &WithServices(None)).unwrap_err();
    assert_eq!(err, EnvError::ServicesNotSynced);
    let mut stat = pod.clone();
    stat.metadata.annotations = Some(
        [(
            "kubernetes.io/config.source".to_string(),
            "file".to_string(),
        )]
        .into(),
    );
    assert!(environment(&stat, c, &facts(), &WithServices(None)).is_ok());
}
