//! Manifests: YAML (multi-document) or JSON text into k8s-openapi objects,
//! decoded strictly as the apiserver does: an unknown field or a value of
//! the wrong type is an error naming its path
//! (`spec.containers[0].imagePullPolcy: unknown field`).

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::field::{FieldError, FieldErrors};

/// An object a manifest may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A v1 Pod.
    Pod(Box<Pod>),
    /// A v1 ConfigMap.
    ConfigMap(ConfigMap),
    /// A v1 Secret (`stringData` already merged into `data`, as the apiserver stores it).
    Secret(Secret),
}

/// Text format of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, possibly several `---` documents.
    Yaml,
    /// One JSON value.
    Json,
}

impl Format {
    /// The format a file name says (`.yaml`, `.yml`, `.json`), if any.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Why a manifest does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not well-formed YAML/JSON.
    #[error("document {doc}: {cause}")]
    Syntax {
        /// 1-based document number.
        doc: usize,
        /// The parser's message.
        cause: String,
    },
    /// Not an object with `apiVersion` and `kind` that husklet knows.
    #[error("document {doc}: {reason}")]
    Kind {
        /// 1-based document number.
        doc: usize,
        /// What is wrong.
        reason: String,
    },
    /// Unknown fields or values of the wrong type.
    #[error("document {doc}: {errors}")]
    Fields {
        /// 1-based document number.
        doc: usize,
        /// The offending fields.
        errors: FieldErrors,
    },
}

/// Parse every document of `text`. Empty documents are skipped; a `v1 List`
/// or `PodList` contributes its items.
pub fn parse(text: &str, format: Format) -> Result<Vec<Object>, ManifestError> {
    let values = match format {
        Format::Json => {
            vec![
                serde_json::from_str::<Value>(text).map_err(|e| ManifestError::Syntax {
                    doc: 1,
                    cause: e.to_string(),
                })?,
            ]
        }
        Format::Yaml => {
            let mut out = Vec::new();
            for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
                let v = Value::deserialize(doc).map_err(|e| ManifestError::Syntax {
                    doc: i + 1,
                    cause: e.to_string(),
                })?;
                out.push(v);
            }
            out
        }
    };
    let mut objects = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if v.is_null() {
            continue;
        }
        decode_value(v, i + 1, "", &mut objects)?;
    }
    Ok(objects)
}

fn decode_value(
    mut v: Value,
    doc: usize,
    prefix: &str,
    out: &mut Vec<Object>,
) -> Result<(), ManifestError> {
    let kind_err = |reason: String| ManifestError::Kind { doc, reason };
    let Some(map) = v.as_object() else {
        return Err(kind_err(format!("{}: expected an object", root(prefix))));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "v1" {
        return Err(kind_err(format!(
            "{}apiVersion: {api_version:?} is not supported (want \"v1\")",
            dot(prefix)
        )));
    }
    match kind {
        "Pod" => {
            normalise_quantities(&mut v);
            out.push(Object::Pod(Box::new(strict::<Pod>(v, doc, prefix)?)));
        }
        "ConfigMap" => out.push(Object::ConfigMap(strict(v, doc, prefix)?)),
        "Secret" => {
            let mut secret: Secret = strict(v, doc, prefix)?;
            if let Some(string_data) = secret.string_data.take() {
                let data = secret.data.get_or_insert_with(Default::default);
                for (k, s) in string_data {
                    data.insert(k, ByteString(s.into_bytes()));
                }
            }
            secret.type_.get_or_insert_with(|| "Opaque".to_string());
            out.push(Object::Secret(secret));
        }
        "List" | "PodList" => {
            let items = match v.get_mut("items").map(Value::take) {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(kind_err(format!("{}items: expected a list", dot(prefix)))),
            };
            for (i, item) in items.into_iter().enumerate() {
                decode_value(item, doc, &format!("{}items[{i}]", dot(prefix)), out)?;
            }
        }
        "" => return Err(kind_err(format!("{}kind: required", dot(prefix)))),
        other => {
            return Err(kind_err(format!(
                "{}kind: {other:?} is not supported (want Pod, ConfigMap, Secret or List)",
                dot(prefix)
            )));
        }
    }
    Ok(())
}

fn root(prefix: &str) -> &str {
    if prefix.is_empty() { "<root>" } else { prefix }
}

fn dot(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}.")
    }
}

/// Deserialize `v` as `T`, reporting unknown fields (which k8s-openapi would
/// silently drop) and type errors with their paths.
fn strict<T: DeserializeOwned>(v: Value, doc: usize, prefix: &str) -> Result<T, ManifestError> {
    let mut unknown = FieldErrors::default();
    let mut record = |path: serde_ignored::Path<'_>| {
        unknown.add(join(prefix, &ignored_path(&path)), "unknown field");
    };
    let de = serde_ignored::Deserializer::new(v, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    match result {
        Ok(t) if unknown.0.is_empty() => Ok(t),
        Ok(_) => Err(ManifestError::Fields {
            doc,
            errors: unknown,
        }),
        Err(e) => {
            let path = typed_path(e.path());
            let mut errors = unknown;
            errors.0.push(FieldError {
                path: join(prefix, &path),
                reason: e.into_inner().to_string(),
            });
            Err(ManifestError::Fields { doc, errors })
        }
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty() || path.starts_with('[')) {
        (true, _) => path.to_string(),
        (false, true) => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn typed_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    s
}

/// Quantities written as YAML/JSON numbers (`cpu: 1`, `cpu: 0.5`) are
/// accepted by the apiserver; k8s-openapi wants strings.
fn normalise_quantities(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match (k.as_str(), &mut *child) {
                    ("limits" | "requests", Value::Object(res)) => {
                        for q in res.values_mut() {
                            number_to_string(q);
                        }
                    }
                    ("sizeLimit" | "divisor", q) => number_to_string(q),
                    ("mode" | "defaultMode", m) => octal_mode(m),
                    _ => normalise_quantities(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise_quantities),
        _ => {}
    }
}

/// YAML 1.1, which Kubernetes' decoder follows, reads `0644` as octal;
/// the YAML 1.2 parser here leaves it a string.
fn octal_mode(v: &mut Value) {
    if let Value::String(s) = v
        && s.len() > 1
        && s.starts_with('0')
        && let Ok(n) = i64::from_str_radix(s.trim_start_matches("0o"), 8)
    {
        *v = Value::from(n);
    }
}

fn number_to_string(v: &mut Value) {
    if let Value::Number(n) = v {
        *v = Value::String(n.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(objs: &[Object]) -> &Pod {
        match &objs[0] {
            Object::Pod(p) => p,
            other => panic!("not a pod: {other:?}"),
        }
    }

    #[test]
    fn yaml_multi_document() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: c
    image: busybox
    resources: {limits: {cpu: 0.5, memory: 64Mi}, requests: {cpu: 1}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {k: v}
---
apiVersion: v1
kind: Pod
metadata: {name: modes}
spec:
  containers: [{name: c, image: i}]
  volumes: [{name: s, secret: {secretName: s, defaultMode: 0400, items: [{key: k, path: p, mode: 0o755}]}}]
---
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {a: aGVsbG8=}
stringData: {b: world}
---
"#;
        let objs = parse(text, Format::Yaml).unwrap();
        assert_eq!(objs.len(), 4);
        let Object::Pod(modes) = &objs[2] else {
            panic!()
        };
        let secret = modes.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
            .secret
            .clone()
            .unwrap();
        assert_eq!(
            secret.default_mode,
            Some(0o400),
            "0400 is octal, as in YAML 1.1"
        );
        assert_eq!(secret.items.unwrap()[0].mode, Some(0o755));
        let p = pod(&objs);
        assert_eq!(p.metadata.name.as_deref(), Some("web"));
        let res = p.spec.as_ref().unwrap().containers[0]
            .resources
            .as_ref()
            .unwrap();
        assert_eq!(res.limits.as_ref().unwrap()["cpu"].0, "0.5");
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "1");
        let Object::Secret(s) = &objs[3] else {
            panic!()
        };
        let data = s.data.as_ref().unwrap();
        assert_eq!(data["a"].0, b"hello");
        assert_eq!(data["b"].0, b"world");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
    }

    /// What `kubectl run web --image=nginx --dry-run=client -o yaml` prints.
    #[test]
    fn kubectl_output_is_accepted() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: null\n  labels:\n    run: web\n  name: web\nspec:\n  containers:\n  - image: nginx\n    name: web\n    resources: {}\n  dnsPolicy: ClusterFirst\n  restartPolicy: Always\nstatus: {}\n";
        let mut objs = parse(text, Format::Yaml).unwrap();
        let Object::Pod(p) = &mut objs[0] else {
            panic!()
        };
        crate::pod::defaults::apply(p);
        crate::pod::validate::pod(p).unwrap();
    }

    #[test]
    fn json_and_list() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}]}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"i","bogus":1}]}}]}"#;
        let err = parse(text, Format::Json).unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: items[1].spec.containers[0].bogus: unknown field"
        );
    }

    #[test]
    fn unknown_fields_named_by_path() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, lables: {a: b}}
spec:
  containers:
  - name: c
    image: busybox
  - name: d
    image: busybox
    imagePullPolcy: Always
    livenessProbe: {httpGet: {port: 80, pth: /}}
"#;
        let ManifestError::Fields { doc, errors } = parse(text, Format::Yaml).unwrap_err() else {
            panic!("want field errors")
        };
        assert_eq!(doc, 1);
        let paths: Vec<_> = errors.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            paths,
            [
                "metadata.lables: unknown field",
                "spec.containers[1].imagePullPolcy: unknown field",
                "spec.containers[1].livenessProbe.httpGet.pth: unknown field",
            ]
        );
    }

    #[test]
    fn wrong_types_named_by_path() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: c\n    ports: [{containerPort: eighty}]\n";
        let err = parse(text, Format::Yaml).unwrap_err().to_string();
        assert!(
            err.starts_with("document 1: spec.containers[0].ports[0].containerPort: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn bad_documents() {
        let cases = [
            (
                "apiVersion: v1\nkind: Deployment\n",
                "kind: \"Deployment\" is not supported",
            ),
            (
                "apiVersion: apps/v1\nkind: Pod\n",
                "apiVersion: \"apps/v1\" is not supported",
            ),
            ("apiVersion: v1\n", "kind: required"),
            ("- a\n- b\n", "<root>: expected an object"),
            ("a: [1, 2\n", "document 1:"),
            (
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n",
                "document 2:",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text, Format::Yaml).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
