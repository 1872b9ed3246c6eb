use std::fs;

use super::*;

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox:1}]\n";
const DB: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"db","namespace":"data"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;

fn added(events: &[PodEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            PodEvent::Add(p) => Some(full_name(p)),
            _ => None,
        })
        .collect()
}

#[test]
fn add_update_remove_and_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("web.yaml"), WEB).unwrap();
    fs::write(d.join("db.json"), DB).unwrap();
    fs::write(d.join("notes.txt"), "not a manifest").unwrap();
    fs::write(d.join(".hidden.yaml"), "garbage: [").unwrap();
    fs::create_dir(d.join("sub.yaml")).unwrap();
    let mut src = StaticPods::new(d, "Node-1");
    let (events, errors) = src.scan();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(added(&events), ["data/db-node-1", "default/web-node-1"]);
    let web = src.pods()["default/web-node-1"].clone();
    let uid = web.metadata.uid.clone().unwrap();
    assert_eq!(uid.len(), 32);
    assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()));
    let spec = web.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("Node-1"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "defaulted");
    let ann = web.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann["kubernetes.io/config.hash"], uid);
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert!(
        spec.tolerations
            .as_ref()
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists"))
    );

    assert_eq!(src.scan().0, vec![], "nothing changed");
    // A restart of the agent: the same identity.
    let mut again = StaticPods::new(d, "Node-1");
    again.scan();
    assert_eq!(
        again.pods()["default/web-node-1"].metadata.uid.as_deref(),
        Some(uid.as_str())
    );
    // Another node: another identity.
    let mut other = StaticPods::new(d, "node-2");
    other.scan();
    assert_ne!(
        other.pods()["default/web-node-2"].metadata.uid.as_deref(),
        Some(uid.as_str())
    );

    // An edit: a new UID replaces the old.
    fs::write(d.join("web.yaml"), WEB.replace("busybox:1", "busybox:2")).unwrap();
    let (events, _) = src.scan();
    match events.as_slice() {
        [PodEvent::Update { old_uid, pod }] => {
            assert_eq!(old_uid, &uid);
            assert_ne!(pod.metadata.uid.as_deref(), Some(uid.as_str()));
            assert_eq!(
                pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
                Some("busybox:2")
            );
        }
        other => panic!("want one update, got {other:?}"),
    }
    let web2_uid = src.pods()["default/web-node-1"].metadata.uid.clone();

    // A typo: an error naming file and field; nothing changes.
    fs::write(
        d.join("bad.yaml"),
        WEB.replace("name: web", "name: bad")
            .replace("image:", "imagePullPolcy: Always, image:"),
    )
    .unwrap();
    let (events, errors) = src.scan();
    assert!(events.is_empty(), "{events:?}");
    let msgs: Vec<String> = errors
        .iter()
        .map(|e| format!("{e}: {}", std::error::Error::source(e).unwrap()))
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].ends_with("bad.yaml: document 1: spec.containers[0].imagePullPolcy: unknown field"),
        "{msgs:?}"
    );
    assert!(
        src.scan().1.is_empty(),
        "the same bad content is reported once"
    );

    // A running pod's file turns invalid: the pod stays as it was.
    fs::write(
        d.join("web.yaml"),
        WEB.replace("containers:", "restartPolicy: Sometimes\n  containers:"),
    )
    .unwrap();
    let (events, errors) = src.scan();
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(errors.len(), 1);
    let msg = errors[0].to_string();
    assert!(
        msg.contains("web.yaml: Pod web: spec.restartPolicy: Unsupported value: \"Sometimes\""),
        "{msg}"
    );
    assert_eq!(src.pods()["default/web-node-1"].metadata.uid, web2_uid);
    // Same for a syntax error.
    fs::write(d.join("web.yaml"), "kind: [").unwrap();
    let (events, errors) = src.scan();
    assert!(
        events.is_empty() && errors.len() == 1,
        "{events:?} {errors:?}"
    );
    assert!(src.pods().contains_key("default/web-node-1"));

    // Removal.
    fs::remove_file(d.join("db.json")).unwrap();
    let (events, _) = src.scan();
    assert_eq!(
        events,
        vec![PodEvent::Remove {
            namespace: "data".into(),
            name: "db-node-1".into(),
            uid: src_uid(&again, "data/db-node-1")
        }]
    );

    // Multi-document file; a duplicate full name loses to the earlier file.
    fs::write(
        d.join("z-multi.yml"),
        format!("{}---\n{}", WEB.replace("name: web", "name: a"), WEB),
    )
    .unwrap();
    let (events, errors) = src.scan();
    assert_eq!(added(&events), ["default/a-node-1"]);
    assert!(
        errors.iter().any(|e| e.to_string().contains(
            "z-multi.yml: Pod default/web-node-1: a pod of this name comes from an earlier file"
        )),
        "{errors:?}"
    );
    // ConfigMaps do not belong here.
    fs::write(
        d.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    let (_, errors) = src.scan();
    assert!(
        errors.iter().any(|e| e
            .to_string()
            .contains("cm.yaml: ConfigMap x: only Pods belong in the static pod dir")),
        "{errors:?}"
    );
}

fn src_uid(src: &StaticPods, key: &str) -> String {
    src.pods()[key].metadata.uid.clone().unwrap()
}

#[tokio::test]
async fn watch_polls() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rx = StaticPods::new(tmp.path(), "n").watch(Duration::from_millis(100));
    fs::write(tmp.path().join("web.yaml"), WEB).unwrap();
    let (events, errors) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(errors.is_empty());
    assert_eq!(added(&events), ["default/web-n"]);
    fs::remove_file(tmp.path().join("web.yaml")).unwrap();
    let (events, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(events.as_slice(), [PodEvent::Remove { .. }]),
        "{events:?}"
    );
}
