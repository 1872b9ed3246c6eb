//! Size limits on the labels and annotations a CRI client passes in.
//!
//! CRI carries Kubernetes' labels and annotations through unchanged, so the
//! limits are Kubernetes' own where they fit:
//! - annotations: at most [`MAX_ANNOTATIONS`] bytes in total (keys plus
//!   values), the apiserver's `TotalAnnotationSizeLimitB`;
//! - labels: the apiserver allows values of 63 characters and qualified-name
//!   keys, but the kubelet adds its own `io.kubernetes.*` labels, and other
//!   CRI clients (crictl, containerd's tools) send whatever they like, so
//!   husklet only caps each label ([`MAX_LABEL`]) and their total
//!   ([`MAX_LABELS`]) to keep records and list replies bounded.

use std::collections::HashMap;

use super::error::CriError;

/// The apiserver's `TotalAnnotationSizeLimitB`: keys plus values, 256 KiB.
pub const MAX_ANNOTATIONS: usize = 256 * 1024;
/// The largest label key or value husklet accepts.
pub const MAX_LABEL: usize = 64 * 1024;
/// The largest total size (keys plus values) of one object's labels.
pub const MAX_LABELS: usize = 256 * 1024;

/// A key as it is shown in a field name: long keys cut, so the error stays short.
fn shown(key: &str) -> String {
    const SHOW: usize = 64;
    if key.len() <= SHOW {
        return format!("{key:?}");
    }
    let mut end = SHOW;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &key[..end])
}

fn total(m: &HashMap<String, String>) -> usize {
    m.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Check `labels`, the field `prefix` (e.g. `config.labels`).
pub fn check_labels(prefix: &str, labels: &HashMap<String, String>) -> Result<(), CriError> {
    for (k, v) in labels {
        if k.len() > MAX_LABEL {
            return Err(CriError::invalid(
                format!("{prefix}[{}]", shown(k)),
                format!("key is {} bytes, more than {MAX_LABEL}", k.len()),
            ));
        }
        if v.len() > MAX_LABEL {
            return Err(CriError::invalid(
                format!("{prefix}[{}]", shown(k)),
                format!("value is {} bytes, more than {MAX_LABEL}", v.len()),
            ));
        }
    }
    let n = total(labels);
    if n > MAX_LABELS {
        return Err(CriError::invalid(
            prefix,
            format!("{n} bytes of keys and values in total, more than {MAX_LABELS}"),
        ));
    }
    Ok(())
}

/// Check `annotations`, the field `prefix` (e.g. `config.annotations`).
pub fn check_annotations(
    prefix: &str,
    annotations: &HashMap<String, String>,
) -> Result<(), CriError> {
    let n = total(annotations);
    if n > MAX_ANNOTATIONS {
        return Err(CriError::invalid(
            prefix,
            format!(
                "{n} bytes of keys and values in total, more than {MAX_ANNOTATIONS} \
                 (Kubernetes' total annotation size limit)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_field_and_the_size() {
        let big: HashMap<_, _> = [("k".to_string(), "x".repeat(1 << 20))].into();
        let e = check_labels("config.labels", &big).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.labels[\"k\"]: value is 1048576 bytes, more than 65536"
        );
        let long_key: HashMap<_, _> = [("k".repeat(MAX_LABEL + 1), String::new())].into();
        let e = check_labels("config.labels", &long_key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key is 65537 bytes") && e.len() < 200, "{e}");
        let many: HashMap<_, _> = (0..5)
            .map(|i| (format!("k{i}"), "x".repeat(60 * 1024)))
            .collect();
        let e = check_labels("config.labels", &many)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config.labels: 307210 bytes"), "{e}");
        let e = check_annotations("config.annotations", &many)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config.annotations: 307210 bytes"), "{e}");
        let ok: HashMap<_, _> = [("a".to_string(), "x".repeat(MAX_ANNOTATIONS - 1))].into();
        assert!(check_annotations("config.annotations", &ok).is_ok());
        let over: HashMap<_, _> = [("a".to_string(), "x".repeat(MAX_ANNOTATIONS))].into();
        assert!(check_annotations("config.annotations", &over).is_err());
    }
}
