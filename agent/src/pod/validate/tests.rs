//! Table tests: each manifest breaks one rule and must be refused with the
//! field path and reason Kubernetes gives.

use crate::pod::field::FieldErrors;
use crate::pod::manifest::{Format, Object, parse};

fn check(yaml: &str) -> Result<(), FieldErrors> {
    let Object::Pod(mut pod) = parse(yaml, Format::Yaml)
        .expect("manifest parses")
        .remove(0)
    else {
        panic!("not a pod")
    };
    crate::pod::defaults::apply(&mut pod);
    super::pod(&pod)
}

/// A pod whose `spec.containers` is `containers` and the rest of spec is `extra`.
fn pod(containers: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: {containers}\n{extra}"
    )
}

#[test]
fn good_pod_passes() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: web.example, namespace: team-a, labels: {app: web, example.com/tier: front}}
spec:
  restartPolicy: OnFailure
  initContainers:
  - {name: setup, image: busybox, command: [sh, -c, "true"]}
  - name: proxy
    image: busybox
    restartPolicy: Always
    startupProbe: {tcpSocket: {port: 15001}}
  containers:
  - name: web
    image: busybox:1.36
    ports: [{name: web, containerPort: 8080}, {containerPort: 9090, hostPort: 9090, protocol: UDP}]
    livenessProbe: {httpGet: {port: web, path: /healthz, httpHeaders: [{name: X-Probe, value: a}]}}
    readinessProbe: {grpc: {port: 9090}, successThreshold: 2}
    lifecycle: {preStop: {sleep: {seconds: 5}}, postStart: {exec: {command: ["true"]}}}
    env:
    - {name: A, value: x}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: K, valueFrom: {configMapKeyRef: {name: cfg, key: k.1, optional: true}}}
    envFrom: [{prefix: CFG_, configMapRef: {name: cfg}}]
    resources: {limits: {cpu: "1", memory: 128Mi}, requests: {cpu: 250m}}
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: data, mountPath: /sub, subPath: a/b, readOnly: true}
    - {name: cfg, mountPath: /etc/cfg, mountPropagation: HostToContainer}
  volumes:
  - {name: data, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
  - {name: cfg, projected: {sources: [{configMap: {name: cfg, items: [{key: a, path: a.conf}]}}, {downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}]}}
  - {name: host, hostPath: {path: /var/log, type: Directory}}
"#;
    check(yaml).unwrap();
}

#[test]
fn each_rule_names_its_field() {
    let c = "[{name: c, image: busybox}]";
    let cases: Vec<(String, &str, &str)> = vec![
        (pod("[]", ""), "spec.containers", "Required value"),
        (pod(c, "  restartPolicy: Sometimes\n"), "spec.restartPolicy", "Unsupported value: \"Sometimes\""),
        (pod(c, "  dnsPolicy: Foo\n"), "spec.dnsPolicy", "Unsupported value"),
        (pod(c, "  dnsPolicy: None\n"), "spec.dnsConfig", "Required value"),
        (pod(c, "  terminationGracePeriodSeconds: -1\n"), "spec.terminationGracePeriodSeconds", "greater than or equal to 0"),
        (pod("[{name: Web, image: b}]", ""), "spec.containers[0].name", "RFC 1123 label"),
        (pod("[{name: c}]", ""), "spec.containers[0].image", "Required value"),
        (pod("[{name: c, image: b}, {name: c, image: b}]", ""), "spec.containers[1].name", "Duplicate value: \"c\""),
        (pod(c, "  initContainers: [{name: c, image: b}]\n"), "spec.containers[0].name", "Duplicate value"),
        (pod("[{name: c, image: b, imagePullPolicy: Sometimes}]", ""), "spec.containers[0].imagePullPolicy", "Unsupported value"),
        (pod("[{name: c, image: b, ports: [{containerPort: 0}]}]", ""), "spec.containers[0].ports[0].containerPort", "between 1 and 65535"),
        (pod("[{name: c, image: b, ports: [{containerPort: 70000}]}]", ""), "spec.containers[0].ports[0].containerPort", "between 1 and 65535"),
        (pod("[{name: c, image: b, ports: [{containerPort: 1, protocol: ICMP}]}]", ""), "spec.containers[0].ports[0].protocol", "Unsupported value"),
        (pod("[{name: c, image: b, ports: [{containerPort: 1, name: a-very-long-port-name}]}]", ""), "spec.containers[0].ports[0].name", "no more than 15"),
        (pod("[{name: c, image: b, ports: [{containerPort: 1, name: web}, {containerPort: 2, name: web}]}]", ""), "spec.containers[0].ports[1].name", "Duplicate value: \"web\""),
        (pod("[{name: c, image: b, ports: [{containerPort: 1, hostPort: 80}]}, {name: d, image: b, ports: [{containerPort: 2, hostPort: 80}]}]", ""), "spec.containers[1].ports[0].hostPort", "Duplicate value: \"80/TCP\""),
        (pod("[{name: c, image: b}, {name: d, image: b, ports: [{name: http, containerPort: 80}], livenessProbe: {httpGet: {port: web}}}]", ""), "spec.containers[1].livenessProbe.httpGet.port", "port \"web\" is not declared by the container"),
        (pod("[{name: c, image: b, readinessProbe: {tcpSocket: {port: web}}}]", ""), "spec.containers[0].readinessProbe.tcpSocket.port", "is not declared"),
        (pod("[{name: c, image: b, livenessProbe: {httpGet: {port: 0}}}]", ""), "spec.containers[0].livenessProbe.httpGet.port", "between 1 and 65535"),
        (pod("[{name: c, image: b, livenessProbe: {periodSeconds: 1}}]", ""), "spec.containers[0].livenessProbe", "must specify a handler type"),
        (pod("[{name: c, image: b, livenessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}}]", ""), "spec.containers[0].livenessProbe", "more than 1 handler type"),
        (pod("[{name: c, image: b, livenessProbe: {exec: {}}}]", ""), "spec.containers[0].livenessProbe.exec.command", "Required value"),
        (pod("[{name: c, image: b, livenessProbe: {exec: {command: [x]}, successThreshold: 2}}]", ""), "spec.containers[0].livenessProbe.successThreshold", "must be 1"),
        (pod("[{name: c, image: b, startupProbe: {exec: {command: [x]}, successThreshold: 3}}]", ""), "spec.containers[0].startupProbe.successThreshold", "must be 1"),
        (pod("[{name: c, image: b, readinessProbe: {exec: {command: [x]}, failureThreshold: -1}}]", ""), "spec.containers[0].readinessProbe.failureThreshold", "greater than or equal to 1"),
        (pod("[{name: c, image: b, readinessProbe: {exec: {command: [x]}, initialDelaySeconds: -5}}]", ""), "spec.containers[0].readinessProbe.initialDelaySeconds", "greater than or equal to 0"),
        (pod("[{name: c, image: b, readinessProbe: {exec: {command: [x]}, terminationGracePeriodSeconds: 5}}]", ""), "spec.containers[0].readinessProbe.terminationGracePeriodSeconds", "must not be set"),
        (pod("[{name: c, image: b, livenessProbe: {httpGet: {port: 1, scheme: FTP}}}]", ""), "spec.containers[0].livenessProbe.httpGet.scheme", "Unsupported value"),
        (pod("[{name: c, image: b, livenessProbe: {grpc: {port: 0}}}]", ""), "spec.containers[0].livenessProbe.grpc.port", "between 1 and 65535"),
        (pod(c, "  initContainers: [{name: i, image: b, livenessProbe: {exec: {command: [x]}}}]\n"), "spec.initContainers[0].livenessProbe", "restartPolicy=Always"),
        (pod(c, "  initContainers: [{name: i, image: b, restartPolicy: OnFailure}]\n"), "spec.initContainers[0].restartPolicy", "Unsupported value"),
        (pod("[{name: c, image: b, restartPolicy: Always}]", ""), "spec.containers[0].restartPolicy", "Forbidden"),
        (pod("[{name: c, image: b, lifecycle: {preStop: {sleep: {seconds: 0}}}}]", ""), "spec.containers[0].lifecycle.preStop.sleep.seconds", "greater than 0"),
        (pod("[{name: c, image: b, lifecycle: {postStart: {}}}]", ""), "spec.containers[0].lifecycle.postStart", "must specify a handler type"),
        (pod("[{name: c, image: b, env: [{name: \"A\\tB\"}]}]", ""), "spec.containers[0].env[0].name", "printable ASCII characters other than '='"),
        (pod("[{name: c, image: b, env: [{name: \"A=B\"}]}]", ""), "spec.containers[0].env[0].name", "other than '='"),
        (pod("[{name: c, image: b, env: [{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}]", ""), "spec.containers[0].env[0].valueFrom", "may not be specified when `value` is not empty"),
        (pod("[{name: c, image: b, env: [{name: A, valueFrom: {}}]}]", ""), "spec.containers[0].env[0].valueFrom", "must specify one of"),
        (pod("[{name: c, image: b, env: [{name: A, valueFrom: {fieldRef: {fieldPath: spec.hostname}}}]}]", ""), "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "Unsupported value: \"spec.hostname\""),
        (pod("[{name: c, image: b, env: [{name: A, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}]}]", ""), "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource", "Unsupported value"),
        (pod("[{name: c, image: b, env: [{name: A, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 2}}}]}]", ""), "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor", "Unsupported value"),
        (pod("[{name: c, image: b, env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: \"a/b\"}}}]}]", ""), "spec.containers[0].env[0].valueFrom.secretKeyRef.key", "valid config key"),
        (pod("[{name: c, image: b, envFrom: [{prefix: \"A=\", configMapRef: {name: x}}]}]", ""), "spec.containers[0].envFrom[0].prefix", "other than '='"),
        (pod("[{name: c, image: b, envFrom: [{}]}]", ""), "spec.containers[0].envFrom[0]", "must specify one of"),
        (pod("[{name: c, image: b, resources: {limits: {cpu: 500m}, requests: {cpu: \"1\"}}}]", ""), "spec.containers[0].resources.requests[cpu]", "must be less than or equal to cpu limit of 500m"),
        (pod("[{name: c, image: b, resources: {limits: {memory: 12XB}}}]", ""), "spec.containers[0].resources.limits[memory]", "quantities must match"),
        (pod("[{name: c, image: b, resources: {requests: {memory: -1}}}]", ""), "spec.containers[0].resources.requests[memory]", "greater than or equal to 0"),
        (pod("[{name: c, image: b, resources: {requests: {gpu: 1}}}]", ""), "spec.containers[0].resources.requests[gpu]", "standard resource"),
        (pod("[{name: c, image: b, volumeMounts: [{name: nope, mountPath: /x}]}]", ""), "spec.containers[0].volumeMounts[0].name", "Not found: \"nope\""),
        (pod("[{name: c, image: b, volumeMounts: [{name: v, mountPath: x}]}]", "  volumes: [{name: v}]\n"), "spec.containers[0].volumeMounts[0].mountPath", "absolute"),
        (pod("[{name: c, image: b, volumeMounts: [{name: v, mountPath: /x}, {name: v, mountPath: /x/}]}]", "  volumes: [{name: v}]\n"), "spec.containers[0].volumeMounts[1].mountPath", "must be unique"),
        (pod("[{name: c, image: b, volumeMounts: [{name: v, mountPath: /x, subPath: ../etc}]}]", "  volumes: [{name: v}]\n"), "spec.containers[0].volumeMounts[0].subPath", "must not contain '..'"),
        (pod("[{name: c, image: b, volumeMounts: [{name: v, mountPath: /x, subPath: /etc}]}]", "  volumes: [{name: v}]\n"), "spec.containers[0].volumeMounts[0].subPath", "relative path"),
        (pod("[{name: c, image: b, volumeMounts: [{name: v, mountPath: /x, mountPropagation: Bidirectional}]}]", "  volumes: [{name: v}]\n"), "spec.containers[0].volumeMounts[0].mountPropagation", "privileged"),
        (pod(c, "  volumes: [{name: v}, {name: v}]\n"), "spec.volumes[1].name", "Duplicate value: \"v\""),
        (pod(c, "  volumes: [{name: V_1}]\n"), "spec.volumes[0].name", "RFC 1123 label"),
        (pod(c, "  volumes: [{name: v, emptyDir: {}, hostPath: {path: /x}}]\n"), "spec.volumes[0]", "more than 1 volume type"),
        (pod(c, "  volumes: [{name: v, nfs: {server: a, path: /x}}]\n"), "spec.volumes[0].nfs", "not supported by husklet"),
        (pod(c, "  volumes: [{name: v, hostPath: {path: /x, type: Folder}}]\n"), "spec.volumes[0].hostPath.type", "Unsupported value: \"Folder\""),
        (pod(c, "  volumes: [{name: v, emptyDir: {medium: Disk}}]\n"), "spec.volumes[0].emptyDir.medium", "Unsupported value"),
        (pod(c, "  volumes: [{name: v, configMap: {name: a, defaultMode: 1000}}]\n"), "spec.volumes[0].configMap.defaultMode", "0777"),
        (pod(c, "  volumes: [{name: v, secret: {}}]\n"), "spec.volumes[0].secret.secretName", "Required value"),
        (pod(c, "  volumes: [{name: v, configMap: {name: a, items: [{key: k, path: ../x}]}}]\n"), "spec.volumes[0].configMap.items[0].path", "'..'"),
        (pod(c, "  volumes: [{name: v, configMap: {name: a, items: [{key: k, path: ..x}]}}]\n"), "spec.volumes[0].configMap.items[0].path", "start with '..'"),
        (pod(c, "  volumes: [{name: v, downwardAPI: {items: [{path: x, fieldRef: {fieldPath: spec.nodeName}}]}}]\n"), "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath", "Unsupported value"),
        (pod(c, "  volumes: [{name: v, downwardAPI: {items: [{path: x, resourceFieldRef: {resource: limits.cpu}}]}}]\n"), "spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName", "Required value"),
        (pod(c, "  volumes: [{name: v, projected: {sources: [{configMap: {name: a, items: [{key: k, path: p}]}}, {secret: {name: b, items: [{key: k, path: p}]}}]}}]\n"), "spec.volumes[0].projected.sources[1]", "conflicting duplicate paths"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: c, image: b}]}\n".to_string(), "metadata.name", "RFC 1123 subdomain"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: \"b c\"}}\nspec: {containers: [{name: c, image: b}]}\n".to_string(), "metadata.labels[a]", "a valid label"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c, image: b}]}\n".to_string(), "metadata.name", "Required value"),
    ];
    for (yaml, path, reason) in cases {
        let errs = check(&yaml).expect_err(&yaml);
        assert!(
            errs.has(path, reason),
            "want {path}: ...{reason}..., got {errs}\n{yaml}"
        );
    }
}

#[test]
fn all_errors_collected() {
    let yaml = pod(
        "[{name: C, image: b, ports: [{containerPort: 0}]}, {name: d}]",
        "  restartPolicy: Sometimes\n",
    );
    let errs = check(&yaml).unwrap_err();
    for path in [
        "spec.containers[0].name",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[1].image",
        "spec.restartPolicy",
    ] {
        assert!(
            errs.0.iter().any(|e| e.path == path),
            "{path} missing from {errs}"
        );
    }
}

#[test]
fn config_objects() {
    let objs = parse(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {\"a/b\": x, ok: y}\nbinaryData: {ok: eA==}\n",
        Format::Yaml,
    )
    .unwrap();
    let Object::ConfigMap(cm) = &objs[0] else {
        panic!()
    };
    let errs = super::config_map(cm).unwrap_err();
    assert!(errs.has("data[a/b]", "valid config key"), "{errs}");
    assert!(
        errs.has("data[ok]", "duplicate of key present in binaryData"),
        "{errs}"
    );
}
