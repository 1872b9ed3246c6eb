//! Name rules of Kubernetes' `apimachinery/pkg/util/validation`, returning
//! the same messages.

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn label_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `IsDNS1123Label`: container, volume, namespace names.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !label_chars_ok(s) {
        errs.push(DNS1123_LABEL_MSG.to_string());
    }
    errs
}

/// `IsDNS1123Subdomain`: pod, ConfigMap and Secret names.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(label_chars_ok) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

/// `IsValidPortName`: IANA_SVC_NAME.
pub fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.is_empty() || s.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `IsQualifiedName`: label and annotation keys (`[prefix/]name`).
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match s.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            name
        }
        None => s,
    };
    if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !qualified_name_part(name) {
        errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
    }
    errs
}

/// `IsValidLabelValue`.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !s.is_empty() && !qualified_name_part(s) {
        errs.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string());
    }
    errs
}

/// `IsRelaxedEnvVarName`, the rule of Kubernetes 1.33 (feature
/// `RelaxedEnvironmentVariableValidation`, on by default since 1.32):
/// printable ASCII other than '='.
pub fn env_var_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    } else if !s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_string(),
        );
    }
    errs
}

/// `IsConfigMapKey`: keys of ConfigMap/Secret data.
pub fn config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if s == "." || s == ".." || s.starts_with("..") {
        errs.push("must not be '.' or '..' or start with '..'".to_string());
    }
    errs
}

/// A relative path that stays below its base (`validateLocalDescendingPath`):
/// not absolute, no `..` element.
pub fn local_descending_path(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.starts_with('/') {
        errs.push("must be a relative path".to_string());
    }
    if s.split('/').any(|part| part == "..") {
        errs.push("must not contain '..'".to_string());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Check = fn(&str) -> Vec<String>;
        let cases: &[(Check, &str, bool)] = &[
            (dns1123_label, "web-1", true),
            (dns1123_label, "1abc", true),
            (dns1123_label, "Web", false),
            (dns1123_label, "-a", false),
            (dns1123_label, "a-", false),
            (dns1123_label, "a.b", false),
            (dns1123_label, "", false),
            (dns1123_label, &"a".repeat(64), false),
            (dns1123_subdomain, "a.b-c.d", true),
            (dns1123_subdomain, "a..b", false),
            (dns1123_subdomain, "a_b", false),
            (port_name, "http", true),
            (port_name, "http-alt2", true),
            (port_name, "8080", false),
            (port_name, "a--b", false),
            (port_name, "-a", false),
            (port_name, "abcdefghijklmnop", false),
            (port_name, "HTTP", false),
            (qualified_name, "app", true),
            (qualified_name, "example.com/app.Name_1", true),
            (qualified_name, "/app", false),
            (qualified_name, "Example.com/app", false),
            (qualified_name, "a/b/c", false),
            (label_value, "", true),
            (label_value, "v1.2_x", true),
            (label_value, "v1 ", false),
            (env_var_name, "MY_VAR", true),
            (env_var_name, "my.env-name", true),
            (env_var_name, "_x", true),
            (env_var_name, "1X", true),
            (env_var_name, "A B", true),
            (env_var_name, "A=B", false),
            (env_var_name, "A\tB", false),
            (env_var_name, "é", false),
            (env_var_name, "", false),
            (config_map_key, "key.name", true),
            (config_map_key, "a/b", false),
            (config_map_key, "..data", false),
            (local_descending_path, "a/b", true),
            (local_descending_path, "a/../b", false),
            (local_descending_path, "/a", false),
            (local_descending_path, "a..b", true),
        ];
        for (check, input, ok) in cases {
            let errs = check(input);
            assert_eq!(errs.is_empty(), *ok, "{input:?}: {errs:?}");
        }
    }
}
