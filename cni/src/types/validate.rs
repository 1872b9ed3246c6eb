//! The spec's rules for the names that end up in paths, chain comments and
//! link names: container ids, interface names and network names. They are
//! the rules libcni and the reference plugins apply, with the same codes, so
//! a name one side accepts the other accepts too.

use super::error::{CniError, ErrorCode};

/// The kernel's limit (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the empty string excluded.
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A CNI_CONTAINERID: code 3 when empty, code 4 "invalid characters in
/// containerID" (the id in the details) otherwise.
pub fn container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::new(
            ErrorCode::UnknownContainer,
            "missing containerID",
        ));
    }
    if !valid_name(id) {
        return Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            "invalid characters in containerID",
        )
        .with_details(id));
    }
    Ok(())
}

/// A CNI_IFNAME (the kernel's `dev_valid_name`): non-empty, at most 15
/// bytes, not `.` or `..`, no `/`, `:` or whitespace; code 4.
pub fn ifname(name: &str) -> Result<(), CniError> {
    let problem = if name.is_empty() {
        "interface name is empty"
    } else if name.len() > MAX_IFNAME_LEN {
        "interface name is too long"
    } else if name == "." || name == ".." {
        "interface name is . or .."
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "interface name contains / or : or whitespace characters"
    } else {
        return Ok(());
    };
    Err(CniError::new(ErrorCode::InvalidEnvironment, problem).with_details(name))
}

/// A network name (it names the IPAM store's directory and the result
/// cache's files); code 7.
pub fn network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::invalid_config("name: missing network name"));
    }
    if !valid_name(name) {
        return Err(
            CniError::invalid_config("name: invalid characters found in network name")
                .with_details(name),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        for ok in ["a", "a51debf7e1eb", "pod-1_x.y", "0"] {
            container_id(ok).unwrap();
        }
        assert_eq!(container_id("").unwrap_err().code, 3);
        for bad in [
            "../../x/y",
            "..",
            ".x",
            "-x",
            "_x",
            "a/b",
            "a b",
            "a\r\nb",
            "1234%%%",
            "é",
        ] {
            let e = container_id(bad).unwrap_err();
            assert_eq!(e.code, 4, "{bad:?}");
            assert_eq!(e.msg, "invalid characters in containerID");
            assert_eq!(e.details, bad);
        }
    }

    #[test]
    fn ifnames() {
        for ok in ["eth0", "net1", "a-very-long-nm", "x".repeat(15).as_str()] {
            ifname(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "eth0:1",
            "a/b",
            "a b",
            "x".repeat(16).as_str(),
        ] {
            assert_eq!(ifname(bad).unwrap_err().code, 4, "{bad:?}");
        }
    }

    #[test]
    fn network_names() {
        network_name("podnet").unwrap();
        network_name("k8s-pod-network.v1").unwrap();
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert_eq!(network_name(bad).unwrap_err().code, 7, "{bad:?}");
        }
    }
}
