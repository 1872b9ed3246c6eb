//! CRI list filters: id (or id prefix), state, sandbox, label selector.

use std::collections::HashMap;

/// Whether `labels` has every pair of `selector`.
pub fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `id` passes an id filter (empty: any; else equal or a prefix, as crictl's short ids).
pub fn id_matches(id: &str, filter: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_need_every_pair() {
        let labels: HashMap<_, _> =
            [("a".to_string(), "1".to_string()), ("b".into(), "2".into())].into();
        assert!(labels_match(&labels, &HashMap::new()));
        assert!(labels_match(&labels, &[("a".into(), "1".into())].into()));
        assert!(!labels_match(&labels, &[("a".into(), "2".into())].into()));
        assert!(!labels_match(&labels, &[("c".into(), "1".into())].into()));
        assert!(id_matches("abcdef", "abc") && id_matches("abc", "") && !id_matches("abc", "b"));
    }
}
