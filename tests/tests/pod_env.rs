//! A container's environment and the downward API end to end, as
//! Kubernetes documents them: `envFrom` (with prefix; `env` wins over it),
//! `valueFrom` fieldRef/resourceFieldRef (with divisor)/configMapKeyRef
//! (optional), `$(VAR)` expansion in command, args and env (`$$` escapes,
//! unknown references stay as written), and downwardAPI and projected
//! volumes.

use std::collections::HashMap;
use std::time::Duration;

use husk_tests::pods::{PodNode, condition};
use husk_tests::require_root;

const T: Duration = Duration::from_secs(60);

/// The ConfigMap `settings` and the Secret `tokens` in the node's config dir.
fn objects(node: &PodNode) {
    std::fs::write(
        node.config_dir().join("settings.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default}\ndata: {color: blue, size: \"3\"}\n",
    )
    .expect("configmap");
    std::fs::write(
        node.config_dir().join("tokens.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tokens, namespace: default}\nstringData: {TOKEN: t0k, GREETING: from-secret}\n",
    )
    .expect("secret");
}

fn env_of(node: &PodNode, pod: &str) -> HashMap<String, String> {
    let (ok, out) = node.exec(pod, "c", &["env"]);
    assert!(ok, "env: {out}");
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_comes_from_values_refs_and_env_from_and_expands_references() {
    require_root!();
    let node = PodNode::start();
    objects(&node);
    node.add(
        "envy.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: envy, labels: {app: demo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'printf "ARGV=%s|%s|%s|%s\n" "$0" "$1" "$2" "$3"; exec sleep 3600', "$(GREETING)"]
    args: ["$(CFG_color)", "$$(GREETING)", "$(NOPE)"]
    resources:
      requests: {cpu: 250m, memory: 32Mi}
      limits: {cpu: 500m, memory: 64Mi}
    envFrom:
    - {prefix: CFG_, configMapRef: {name: settings}}
    - secretRef: {name: tokens}
    - configMapRef: {name: absent, optional: true}
    env:
    - {name: GREETING, value: hello}
    - {name: COMPOSED, value: "$(GREETING)-$(CFG_size)-$(NOPE)"}
    - {name: ESCAPED, value: "$$(GREETING)"}
    - {name: LATER, value: "$(DEFINED_AFTER)"}
    - {name: DEFINED_AFTER, value: x}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: POD_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: MEM_LIMIT_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_REQUEST_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: OPTIONAL, valueFrom: {configMapKeyRef: {name: settings, key: nope, optional: true}}}
"#,
    );
    let p = node.wait_pod("envy", T, "Ready", |p| condition(p, "Ready"));
    let env = env_of(&node, "envy");
    let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("<unset>");
    assert_eq!(get("CFG_color"), "blue", "envFrom with prefix");
    assert_eq!(get("CFG_size"), "3");
    assert_eq!(get("color"), "<unset>", "the prefix is always added");
    assert_eq!(get("TOKEN"), "t0k", "envFrom a secret");
    assert_eq!(get("GREETING"), "hello", "env wins over envFrom");
    assert_eq!(
        get("COMPOSED"),
        "hello-3-$(NOPE)",
        "unknown references stay"
    );
    assert_eq!(get("ESCAPED"), "$(GREETING)", "$$ escapes");
    assert_eq!(
        get("LATER"),
        "$(DEFINED_AFTER)",
        "only variables defined earlier expand"
    );
    assert_eq!(get("POD_NAME"), node.full("envy"));
    assert_eq!(get("POD_NS"), "default");
    assert_eq!(
        get("POD_UID"),
        p["pod"]["metadata"]["uid"].as_str().unwrap_or("?")
    );
    assert_eq!(get("POD_IP"), p["status"]["podIP"].as_str().unwrap_or("?"));
    assert_eq!(get("NODE"), husk_tests::pods::NODE);
    assert_eq!(get("APP"), "demo");
    assert_eq!(get("MEM_LIMIT_MI"), "64");
    assert_eq!(get("CPU_REQUEST_M"), "250");
    assert_eq!(get("CPU_LIMIT"), "1", "0.5 cpu with divisor 1 rounds up");
    assert_eq!(
        get("OPTIONAL"),
        "<unset>",
        "an optional missing key is left out"
    );
    let logs = node.container_logs("envy", "c", &[]);
    assert!(
        logs.contains("ARGV=hello|blue|$(GREETING)|$(NOPE)"),
        "command and args expanded: {logs:?}"
    );
}

#[test]
fn downward_api_and_projected_volumes_hold_the_pod_s_facts() {
    require_root!();
    let node = PodNode::start();
    objects(&node);
    node.add(
        "facts.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: facts, labels: {app: demo, tier: web}, annotations: {note: hi}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: sub/annotations, fieldRef: {fieldPath: metadata.annotations}}
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
  - name: all
    projected:
      defaultMode: 0440
      sources:
      - configMap: {name: settings, items: [{key: color, path: cfg/color}]}
      - secret: {name: tokens, items: [{key: TOKEN, path: token}]}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    resources: {limits: {memory: 48Mi}}
    volumeMounts:
    - {name: info, mountPath: /etc/info}
    - {name: all, mountPath: /etc/all}
"#,
    );
    node.wait_pod("facts", T, "Ready", |p| condition(p, "Ready"));
    let cat = |path: &str| {
        let (ok, out) = node.exec("facts", "c", &["cat", path]);
        assert!(ok, "cat {path}: {out}");
        out
    };
    assert_eq!(cat("/etc/info/labels"), "app=\"demo\"\ntier=\"web\"");
    assert_eq!(cat("/etc/info/name"), node.full("facts"));
    // Static pods also carry kubelet's kubernetes.io/config.* annotations.
    let ann = cat("/etc/info/sub/annotations");
    let lines: Vec<&str> = ann.lines().collect();
    assert!(
        lines.contains(&"note=\"hi\"") && lines.contains(&"kubernetes.io/config.source=\"file\""),
        "{ann:?}"
    );
    assert_eq!(cat("/etc/info/mem"), "48");
    assert_eq!(cat("/etc/all/cfg/color"), "blue");
    assert_eq!(cat("/etc/all/token"), "t0k");
    assert_eq!(cat("/etc/all/ns"), "default");
    let (_, mode) = node.exec(
        "facts",
        "c",
        &["stat", "-L", "-c", "%a", "/etc/all/cfg/color"],
    );
    assert_eq!(mode.trim(), "440", "projected defaultMode");
    let (_, ls) = node.exec("facts", "c", &["ls", "-a", "/etc/all"]);
    assert!(
        ls.contains("..data"),
        "projected files are swapped atomically too: {ls}"
    );
}
